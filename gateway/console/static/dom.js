// A few DOM helpers. Text always goes in as text nodes, never as HTML: summaries and file names
// are user data.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

let uid = 0;
export const newId = (prefix) => `${prefix}-${++uid}`;

// A labelled form field: the label always names the control, for screen readers and tests alike.
export function field(label, control, hint) {
  control.id ||= newId("f");
  const hintNode = hint ? h("small", { id: `${control.id}-hint` }, hint) : null;
  if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hintNode);
}

export function message(kind = "error") {
  return h("p", { class: kind, role: kind === "error" ? "alert" : "status", hidden: true });
}

export function show(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

export function when(value) {
  if (!value) return "—";
  return new Date(value).toLocaleString();
}

export function seconds(from, to) {
  if (!from || !to) return "—";
  const s = (new Date(to) - new Date(from)) / 1000;
  return `${s.toFixed(s < 10 ? 2 : 1)} s`;
}

export function progressBar(label) {
  const bar = h("progress", { max: 100, value: 0, "aria-label": label });
  const text = h("span", { class: "pct" }, "0%");
  return {
    node: h("div", { class: "progress" }, bar, text),
    set(done, total) {
      const pct = total > 0 ? Math.floor((100 * done) / total) : 0;
      bar.value = pct;
      text.textContent = `${pct}% (${done}/${total})`;
    },
  };
}

export const table = (headers, body) =>
  h(
    "div",
    { class: "table-wrap" },
    h("table", {}, h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))), body),
  );
