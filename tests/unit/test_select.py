"""Sentence scoring and selection of the extractive model, on hand-made embeddings."""

from __future__ import annotations

import dataclasses

import numpy as np

from summarizer import SummarizerSettings
from summarizer.segment import Segment, segment, summary_units
from summarizer.select import (
    SelectionConfig,
    boilerplate,
    directed_centrality,
    scores,
    section_numbers,
    section_ranks,
    select,
)

# Every term off but the one a test looks at.
BARE = SelectionConfig(
    centroid_weight=0.0,
    centrality_weight=0.0,
    position_weight=0.0,
    section_weight=0.0,
    boilerplate_penalty=0.0,
    redundancy=0.0,
    duplicate_threshold=1.0,
    relevance_floor=0.0,
    min_words=1,
)


def _unit(rows: list[list[float]]) -> np.ndarray:
    matrix = np.asarray(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_directed_centrality_favours_what_later_sentences_elaborate_on() -> None:
    # 0 and 2 are alike, 1 and 3 are alike: each pair's first sentence has a later neighbour,
    # its second an earlier one.
    similarity = np.array(
        [
            [1.0, 0.1, 0.9, 0.1],
            [0.1, 1.0, 0.1, 0.8],
            [0.9, 0.1, 1.0, 0.1],
            [0.1, 0.8, 0.1, 1.0],
        ]
    )
    central = directed_centrality(similarity, forward_weight=-1.0, backward_weight=1.0, threshold=0.5)
    assert central.min() == 0.0
    assert central.max() == 1.0
    assert central[0] == 1.0  # the strongest edge, to a later sentence
    assert central[0] > central[1] > central[3]
    assert central[2] == 0.0  # its only edge points back, with the strongest weight against it
    # Undirected (both weights 1), pairs score alike: position is what the weights add.
    undirected = directed_centrality(similarity, forward_weight=1.0, backward_weight=1.0, threshold=0.5)
    assert undirected[0] == undirected[2]
    assert undirected[1] == undirected[3]


def test_directed_centrality_threshold_cuts_weak_edges() -> None:
    similarity = np.array([[1.0, 0.2, 0.3], [0.2, 1.0, 0.9], [0.3, 0.9, 1.0]])
    # Above half of the range (0.2 .. 0.9) only the edge between 1 and 2 survives.
    central = directed_centrality(similarity, forward_weight=0.0, backward_weight=1.0, threshold=0.5)
    assert central.tolist() == [0.0, 1.0, 0.0]
    # With no threshold, 0's edges to 1 and 2 count too and outweigh 1's single one.
    loose = directed_centrality(similarity, forward_weight=0.0, backward_weight=1.0, threshold=0.0)
    assert loose[0] > 0.0


def test_directed_centrality_of_tiny_or_uniform_documents_is_zero() -> None:
    assert directed_centrality(
        np.ones((1, 1)), forward_weight=-1, backward_weight=1, threshold=0.5
    ).tolist() == [0.0]
    assert not directed_centrality(np.ones((3, 3)), forward_weight=-1, backward_weight=1, threshold=0.5).any()


def test_position_prior_decays_with_position() -> None:
    embeddings = np.eye(4, dtype=np.float32)
    config = dataclasses.replace(BARE, position_weight=0.2, position_scale=2.0)
    score, _ = scores(embeddings, [10] * 4, [0, 1, 2, 3], config=config)
    assert np.allclose(score, [0.2, 0.2 / 1.5, 0.1, 0.2 / 2.5])
    # Equal content: the budget goes to the first sentences.
    assert select(embeddings, [10] * 4, [0, 1, 2, 3], max_words=20, config=config) == [0, 1]


def test_section_prior_favours_the_opening_sentences_of_each_section() -> None:
    within, order = section_ranks([1, 1, 1, 2, 2, 4])
    assert within.tolist() == [0, 1, 2, 0, 1, 0]
    assert order.tolist() == [0, 0, 0, 1, 1, 2]
    embeddings = np.eye(6, dtype=np.float32)
    config = dataclasses.replace(BARE, section_weight=0.1, section_scale=1.0)
    chosen = select(
        embeddings, [10] * 6, list(range(6)), max_words=30, sections=[1, 1, 1, 2, 2, 4], config=config
    )
    assert chosen == [0, 3, 5]
    # With a small order scale, the second sentence of the first section beats later sections.
    ordered = dataclasses.replace(config, section_order_scale=0.6)
    assert select(
        embeddings, [10] * 6, list(range(6)), max_words=30, sections=[1, 1, 1, 2, 2, 4], config=ordered
    ) == [0, 1, 3]


def test_section_numbers_count_the_headings_before_each_unit() -> None:
    text = (
        "Intro sentence one is here. Intro sentence two is here.\n\n"
        "Motivation\n\nWe want this for good reasons today.\n\n"
        "Design\n\nThe design is simple and it works well."
    )
    segments = segment(text)
    units = summary_units(segments, max_words=60)
    assert section_numbers(units, segments) == [0, 0, 1, 2]
    assert section_numbers([Segment("x y z", 5)], []) == [0]


def test_mmr_drops_a_near_duplicate() -> None:
    # 0 and 1 say the same thing; 2 says something else, a little less central.
    embeddings = _unit([[1.0, 0.05, 0.0], [1.0, 0.0, 0.05], [0.6, 0.8, 0.0]])
    central = dataclasses.replace(BARE, centroid_weight=1.0)
    assert select(embeddings, [10] * 3, [0, 1, 2], max_words=20, config=central) == [0, 1]
    mmr = dataclasses.replace(central, redundancy=0.5)
    assert select(embeddings, [10] * 3, [0, 1, 2], max_words=20, config=mmr) == [0, 2]
    # Over the duplicate threshold a sentence never comes in, even with redundancy off.
    strict = dataclasses.replace(central, duplicate_threshold=0.99)
    assert select(embeddings, [10] * 3, [0, 1, 2], max_words=20, config=strict) == [0, 2]


def test_boilerplate_scores_code_and_urls_not_prose() -> None:
    assert boilerplate("The scheduler places pods on the nodes that fit them.") == 0.0
    assert boilerplate("See https://example.org/spec for the details of it.") == 1.0
    assert boilerplate("Call os.path.join(a, b) with --force and x_y set.") > 0.3
    embeddings = np.eye(2, dtype=np.float32)
    texts = ["Set foo.bar_baz(x) and --flag={a} now.", "The flag turns the new behaviour on."]
    config = dataclasses.replace(BARE, boilerplate_penalty=0.5)
    assert select(embeddings, [8, 8], [0, 1], max_words=10, texts=texts, config=config) == [1]


def test_selection_is_deterministic_and_order_free_of_ties() -> None:
    rng = np.random.default_rng(7)
    embeddings = _unit(rng.normal(size=(40, 8)).tolist())
    words = rng.integers(5, 40, size=40).tolist()
    sections = sorted(rng.integers(0, 6, size=40).tolist())
    default = SelectionConfig()
    first = select(embeddings, words, list(range(40)), max_words=100, sections=sections, config=default)
    again = select(
        embeddings.copy(), words, list(range(40)), max_words=100, sections=sections, config=default
    )
    assert first == again
    assert sum(words[i] for i in first) <= 100
    assert first == sorted(first)


def test_settings_and_selection_config_carry_the_same_knobs_and_defaults() -> None:
    settings = SummarizerSettings().selection.model_dump()
    assert SelectionConfig(**settings) == SelectionConfig()


def test_relevance_floor_keeps_off_topic_filler_out_of_the_budget() -> None:
    # Three sentences on the topic, one far from it that would fit the words left over.
    embeddings = _unit([[1.0, 0.1, 0.0], [1.0, 0.0, 0.1], [0.9, 0.2, 0.1], [0.1, 0.0, 1.0]])
    words = [20, 20, 20, 5]
    config = dataclasses.replace(BARE, centroid_weight=1.0)
    loose = select(embeddings, words, [0, 1, 2, 3], max_words=45, config=config)
    assert len(loose) == 3 and loose[-1] == 3
    floored = dataclasses.replace(config, relevance_floor=0.6)
    assert select(embeddings, words, [0, 1, 2, 3], max_words=45, config=floored) == loose[:2]
