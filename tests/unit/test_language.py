"""Language detection and the word units that summary budgets count."""

from __future__ import annotations

from pathlib import Path

import pytest

from summarizer.language import count_words, detect_language, truncate_words

CHINESE = (Path(__file__).resolve().parents[1] / "data" / "zh_message_queues.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kafka carries ids. The database keeps the text. Workers pull batches and store results.", "en"),
        ("Die Warteschlange speichert nur die Nummern, und der Text bleibt in der Datenbank.", "de"),
        ("La file d'attente ne garde que les numéros et le texte reste dans la base de données.", "fr"),
        ("La cola solo guarda los números y el texto se queda en la base de datos del sistema.", "es"),
        ("La coda conserva solo i numeri e il testo resta nella base di dati, che è più sicura.", "it"),
        ("A fila guarda apenas os números e o texto fica no banco de dados, que não se perde.", "pt"),
        ("De wachtrij bewaart alleen de nummers en de tekst blijft in de database van het systeem.", "nl"),
        (CHINESE, "zh"),
        ("キューはジョブの番号だけを保持し、本文はデータベースに残ります。", "ja"),
        ("큐는 작업 번호만 보관하고 본문은 데이터베이스에 남습니다.", "ko"),
        ("Очередь хранит только номера задач, а текст остаётся в базе данных.", "ru"),
        ("Черга зберігає лише номери завдань, а текст лишається в базі даних і її копіях.", "uk"),
        ("تحتفظ قائمة الانتظار بأرقام المهام فقط ويبقى النص في قاعدة البيانات.", "ar"),
        ("התור שומר רק את מספרי המשימות והטקסט נשאר במסד הנתונים.", "he"),
        ("Η ουρά κρατά μόνο τους αριθμούς των εργασιών.", "el"),
        ("कतार केवल कार्य संख्या रखती है और पाठ डेटाबेस में रहता है।", "hi"),
        ("คิวเก็บเฉพาะหมายเลขงาน ส่วนข้อความอยู่ในฐานข้อมูล", "th"),
        ("1234 5678 -- 3.14 !!!", "und"),
        ("Kafka Celery Redis", "und"),
    ],
)
def test_detect_language(text: str, expected: str) -> None:
    assert detect_language(text) == expected


def test_a_chinese_text_with_english_terms_is_still_chinese() -> None:
    assert detect_language("我们用 Kafka 和 Celery 处理批量任务，结果写入 PostgreSQL 数据库。") == "zh"


def test_cjk_characters_count_one_word_each_and_punctuation_none() -> None:
    assert count_words("Kafka carries ids. The database keeps the text.") == 8
    assert count_words("数据库保存文本。") == 7
    assert count_words("我们用Kafka传递任务编号，数据库保存文本。") == 17
    assert count_words("キューは番号だけ") == 8
    assert count_words("큐는 작업 번호만 보관합니다.") == 4  # Korean separates words with spaces


def test_truncate_words_cuts_at_word_units() -> None:
    assert truncate_words("one  two three four", 2) == "one two"
    assert truncate_words("我们用Kafka传递任务编号。", 4) == "我们用Kafka"
    assert count_words(truncate_words(CHINESE, 100)) == 100
