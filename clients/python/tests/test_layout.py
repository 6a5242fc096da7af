"""The client's offsets against the layout tables of docs/shm.md, the one source of
the ring's layout (the hub's side of the same check: src/output/ring/tests.rs)."""

import os
import re

from camhub import ring
from conftest import PKG

DOC = os.path.join(os.path.dirname(os.path.dirname(PKG)), "docs", "shm.md")


def documented_tables():
    """The `| offset | type | field |` tables, in the document's order: [(offset, type,
    field)] each, a field's name being the first word of its description."""
    tables, rows = [], None
    with open(DOC) as f:
        for line in f:
            line = line.strip()
            cells = [c.strip() for c in line[1:-1].split("|")] if len(line) > 1 and line[0] == line[-1] == "|" else []
            if cells == ["offset", "type", "field"]:
                rows = []
            elif rows is None or (cells and cells[0].startswith("---")):
                continue
            elif not cells:
                tables.append(rows)
                rows = None
            else:
                assert len(cells) == 3, f"docs/shm.md: a layout row with other than 3 cells: {line!r}"
                offset, ty, field = cells
                rows.append((int(offset), ty.strip("`"), re.match(r"[A-Za-z0-9_]*", field).group()))
    if rows is not None:
        tables.append(rows)
    return tables


def test_offsets_are_the_documented_layout():
    tables = documented_tables()
    ours = [("header", ring.HEADER), ("slot", ring.SLOT), ("reader table entry", ring.READER)]
    assert len(tables) == len(ours), "docs/shm.md: the layout tables are the header, a slot, a reader entry"
    for rows, (table, offsets) in zip(tables, ours):
        documented = {field: offset for offset, _, field in rows if field != "reserved"}
        assert offsets == documented, f"camhub/ring.py's {table} offsets (left) against docs/shm.md (right)"
    types = {field: ty for _, ty, field in tables[0]}
    assert types["planes"] == f"4 x {ring.PLANE_SIZE} bytes"
    assert types["readers"] == f"{ring.MAX_READERS} x {ring.READER_SIZE} bytes"
