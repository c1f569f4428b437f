"""A rejected record, as every source reports it and the dead-letter files hold it."""

import dataclasses
RAW_CAP = 1024  # bytes of a rejected record kept in the dead-letter output
REJECTED = "rejected"  # the tag of every reader's dead-letter output


@dataclasses.dataclass
class Reject:
    """A record that is not a row: where it is, what it was, and why.

    Attributes:
      file: the input file.
      line: the line a CSV record starts on, or the record number (1-based) in a
        TFRecord or Parquet file; 0 when the whole file is meant.
      reason: a short stable name (`wrong_field_count`, `bad_float`, ...).
      detail: what a person needs to fix it, naming the column where there is one.
      raw: the record's bytes (capped at RAW_CAP in the output).
      rows: how many rows this entry stands for (a Parquet file of another schema is one
        entry for all its rows), so that read = written + rejected still adds up.
    """

    file: str
    line: int
    reason: str
    detail: str
    raw: bytes
    rows: int = 1

    def to_json(self) -> dict:
        raw = self.raw[:RAW_CAP]
        out = {"file": self.file, "line": self.line, "reason": self.reason,
               "detail": self.detail, "raw": raw.decode("utf-8", "backslashreplace"),
               "raw_truncated": len(self.raw) > RAW_CAP}
        if self.rows != 1:
            out["rows"] = self.rows
        return out
