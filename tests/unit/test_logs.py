"""Log lines stay one line, whatever the ids in them hold."""

from __future__ import annotations

import json
import logging

from worker.logs import JsonFormatter


def test_a_record_is_one_line_even_with_unicode_line_breaks_in_its_fields() -> None:
    crafted = "ref\x85id\u2028with\u2029breaks\nand\rcontrols"
    record = logging.makeLogRecord({"msg": "settled", "levelname": "INFO", "call": crafted})
    line = JsonFormatter().format(record)
    assert line.splitlines() == [line]
    assert json.loads(line)["call"] == crafted
