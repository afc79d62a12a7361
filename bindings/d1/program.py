"""SQLite programs as ``EXPLAIN`` lists them, read as cursors and loops.

:mod:`flarelet.bindings.d1.rows` estimates D1's row counters from what a statement's program
does: which b-tree each cursor reads or writes, which loops step through which cursor, which
instructions a D1 database never runs. This module reads that from the listing; it depends on
SQLite's opcodes and flags (``vdbe.c``), not on D1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

#: SQLite's ``OPFLAG_NCHANGE`` (the op counts as a change) and ``OPFLAG_SEEKEQ`` (an
#: ``OpenRead`` whose cursor only serves equality seeks)
OPFLAG_NCHANGE = 0x01
OPFLAG_SEEKEQ = 0x02
#: ``OpenWrite``/``OpenRead`` whose root page is in a register (an index being created)
OPFLAG_P2ISREG = 0x10
#: an ``Insert`` that only reports a WITHOUT ROWID row to hooks (no b-tree write)
OPFLAG_ISNOOP = 0x40
SCHEMA_ROOT = 1

STEP_OPS = frozenset({"Next", "Prev", "SorterNext", "VNext"})
SCAN_OPENERS = frozenset({"Rewind", "Last", "Sort", "SorterSort"})
SEEK_OPS = frozenset({"SeekGE", "SeekGT", "SeekLE", "SeekLT"})
ROWID_LOOKUPS = frozenset({"SeekRowid", "NotExists"})
OPENERS = SCAN_OPENERS | SEEK_OPS | frozenset({"VFilter"})
#: ops that jump on a comparison: jumping to a loop's ``Next`` skips a row (a filter), jumping
#: past it ends a range
COMPARE_JUMPS = frozenset(
    {
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "If",
        "IfNot",
        "IsNull",
        "NotNull",
        "IdxGT",
        "IdxGE",
        "IdxLT",
        "IdxLE",
        "IsTrue",
        "Found",
        "NotFound",
        "NoConflict",
        "IfNullRow",
        "Filter",
    }
)
#: ops whose P2 is an address they may jump to (not a register)
JUMP_OPS = (
    COMPARE_JUMPS
    | STEP_OPS
    | OPENERS
    | ROWID_LOOKUPS
    | frozenset(
        {
            "Goto",
            "Gosub",
            "Yield",
            "InitCoroutine",
            "IfPos",
            "IfNotZero",
            "DecrJumpZero",
            "Once",
            "Jump",
            "RowSetRead",
            "RowSetTest",
            "FkIfZero",
            "ElseEq",
            "MustBeInt",
            "IfNoHope",
            "IfSmaller",
            "SorterCompare",
            "SeekScan",
            "SeekHit",
            "IfSizeBetween",
            "NotFound",
            "Found",
        }
    )
)
RANGE_ENDS = frozenset({"IdxGT", "IdxGE", "IdxLT", "IdxLE", "Gt", "Ge", "Lt", "Le"})
EPHEMERAL_OPENS = frozenset({"OpenEphemeral", "OpenAutoindex", "OpenDup"})
#: tables SQLite keeps for itself: writes to them are the statement's overhead, not its rows
INTERNAL_TABLES = frozenset({"sqlite_schema", "sqlite_master", "sqlite_sequence", "sqlite_stat1", "sqlite_stat4"})


class Op(NamedTuple):
    """One instruction of ``EXPLAIN``'s listing."""

    addr: int
    opcode: str
    p1: int
    p2: int
    p3: int
    p4: Any
    p5: int


@dataclass(frozen=True)
class Cursor:
    """What a cursor number points at: a b-tree of the database (``table`` set) or a temporary one."""

    kind: str  # "btree", "ephemeral", "sorter", "pseudo", "vtab"
    table: str | None = None  # the table whose rows the b-tree holds (an index's table)
    seek_eq: bool = False
    new: bool = False  # the b-tree is created by this statement (its root is in a register)
    unique_columns: int = 0  # a unique index's column count (0: not a unique index)


@dataclass(frozen=True)
class BTree:
    """A b-tree of the schema: the table whose rows it holds, and whether it is a unique index."""

    table: str
    unique_columns: int = 0


def schema_btrees(rows: Sequence[Sequence[Any]]) -> dict[int, BTree]:
    """Root page -> b-tree, from ``sqlite_schema`` rows ``(rootpage, type, name, tbl_name, sql)``.

    A unique index is a PRIMARY KEY or UNIQUE constraint's (``sqlite_autoindex_*``) or a
    ``CREATE UNIQUE INDEX``; its column count comes from ``index_info`` (the caller's).
    """
    trees: dict[int, BTree] = {SCHEMA_ROOT: BTree("sqlite_schema")}
    for root, _type, _name, table, _sql, columns in rows:
        if root:
            trees[int(root)] = BTree(str(table), int(columns))
    return trees


@dataclass(frozen=True)
class Loop:
    step: Op  # the Next/Prev/SorterNext/VNext (or backward Goto) that closes the loop
    opener: Op | None  # the op that first positions the cursor
    start: int  # first address of the body
    exit: int  # where the loop goes when done

    @property
    def end(self) -> int:
        return self.step.addr


@dataclass
class Program:
    """One statement's program, with its cursors and loops."""

    ops: list[Op]
    cursor_at: dict[int, Cursor]  # address -> the cursor its op's P1 names there
    loops: list[Loop]
    parents: dict[int, int | None] = field(default_factory=dict)  # loop index -> enclosing loop index

    @cached_property
    def scanned_tables(self) -> frozenset[str]:
        """Tables whose size the counts need: those scanned in full and those ``count(*)``-ed."""
        tables: set[str] = set()
        for op in self.ops:
            if op.opcode in SCAN_OPENERS or (op.opcode == "Count" and op.addr not in self.counted_columns):
                cursor = self.cursor(op)
                if cursor is not None and cursor.kind == "btree" and cursor.table and not cursor.new:
                    tables.add(cursor.table)
        return frozenset(tables)

    @cached_property
    def counted_columns(self) -> dict[int, int]:
        """``count(*)`` ops whose count the statement returns as is: address -> result column.

        ``SELECT count(*) FROM t`` reads the table's rows; its answer is that number, so no
        second count is needed.
        """
        out: dict[int, int] = {}
        for count in (op for op in self.ops if op.opcode == "Count" and op.p3 == 0):
            column = self._result_column(count.p2, count.addr)
            if column is not None:
                out[count.addr] = column
        return out

    @cached_property
    def counted_steps(self) -> dict[int, int]:
        """``count(*)`` aggregate steps whose total the statement returns: address -> result column.

        ``SELECT count(*) FROM t WHERE indexed = ?`` steps once per row its range visits, and
        answers how many that was.
        """
        out: dict[int, int] = {}
        for step in (op for op in self.ops if op.opcode == "AggStep" and op.p4 == "count(0)"):
            column = self._result_column(step.p3, step.addr)
            if column is not None:
                out[step.addr] = column
        return out

    def _result_column(self, register: int, after: int) -> int | None:
        """The result column that carries ``register``'s value as is (through copies), if one does."""
        results = [op for op in self.ops if op.opcode == "ResultRow"]
        if len(results) != 1:
            return None
        first, width = results[0].p1, results[0].p2
        registers = {register}
        for op in self.ops:
            if op.opcode in ("Copy", "SCopy") and op.p1 in registers and op.addr > after:
                registers.add(op.p2)
        return next((r - first for r in sorted(registers) if first <= r < first + width), None)

    def cursor(self, op: Op) -> Cursor | None:
        return self.cursor_at.get(op.addr)

    @cached_property
    def writes_schema(self) -> bool:
        """The statement changes the schema (``CREATE``, ``DROP``, ``ALTER``)."""
        return any(
            op.opcode == "OpenWrite" and (c := self.cursor(op)) is not None and c.table == "sqlite_schema"
            for op in self.ops
        )


def _dead(ops: list[Op]) -> set[int]:
    """Addresses a D1 database never runs: the foreign-key recount skipped while no constraint
    is pending (``FkIfZero``), the root-page fix-up after a ``DROP`` that only an auto-vacuumed
    database needs (``IfNot`` on ``Destroy``'s moved page), and code jumped over."""
    moved = {op.p2 for op in ops if op.opcode == "Destroy"}
    dead: set[int] = set()
    # where a jump may land: a jump op's P2, and a co-routine's entry (InitCoroutine's P3)
    targets = {op.p2 for op in ops if op.opcode in JUMP_OPS} | {op.p3 for op in ops if op.opcode == "InitCoroutine"}
    for op in ops:
        if op.opcode == "FkIfZero" or (op.opcode == "IfNot" and op.p1 in moved):
            dead.update(range(op.addr + 1, op.p2))
        elif op.opcode == "Goto" and op.p2 > op.addr + 1:
            # code skipped by an unconditional jump that nothing else jumps into (a WITHOUT
            # ROWID table's primary key, made with the table)
            skipped = range(op.addr + 1, op.p2)
            if not any(addr in targets for addr in skipped):
                dead.update(skipped)
    return dead


_OTHER_OPENS = {
    **{opcode: Cursor("ephemeral") for opcode in EPHEMERAL_OPENS},
    "SorterOpen": Cursor("sorter"),
    "OpenPseudo": Cursor("pseudo"),
    "VOpen": Cursor("vtab"),
}
_BTREE_OPENS = frozenset({"OpenRead", "OpenWrite", "ReopenIdx"})
_ALL_OPENS = _BTREE_OPENS | frozenset(_OTHER_OPENS)


def _open(op: Op, roots: dict[int, BTree]) -> Cursor | None:
    if op.opcode in _BTREE_OPENS:
        new = bool(op.p5 & OPFLAG_P2ISREG)
        tree = None if new or op.p3 != 0 else roots.get(op.p2)
        return Cursor(
            "btree",
            tree.table if tree else None,
            seek_eq=bool(op.p5 & OPFLAG_SEEKEQ),
            new=new,
            unique_columns=tree.unique_columns if tree else 0,
        )
    return _OTHER_OPENS.get(op.opcode)


def parse_program(rows: Sequence[Sequence[Any]], roots: dict[int, BTree]) -> Program:
    """A program from its ``EXPLAIN`` rows and the schema's b-trees (:func:`schema_btrees`)."""
    all_ops = [Op(r[0], r[1], r[2], r[3], r[4], r[5], r[6] or 0) for r in rows]
    dead = _dead(all_ops)
    ops = [op for op in all_ops if op.addr not in dead]
    # the preamble (from Init's target: start the transaction, read sqlite_sequence, load
    # constants) runs first, then jumps back to the top: cursors are resolved in that order,
    # and that last jump is no loop
    preamble = all_ops[0].p2 if all_ops and all_ops[0].opcode == "Init" and all_ops[0].p2 > 0 else len(all_ops)
    current: dict[int, Cursor] = {}
    cursor_at: dict[int, Cursor] = {}
    for op in [o for o in ops if o.addr >= preamble] + [o for o in ops if o.addr < preamble]:
        if op.opcode in _ALL_OPENS:
            opened = _open(op, roots)
            if opened is not None:
                current[op.p1] = opened
        if op.p1 in current:
            cursor_at[op.addr] = current[op.p1]
    loops: list[Loop] = []
    for op in ops:
        if op.opcode in STEP_OPS and op.p2 <= op.addr:
            opener = next(
                (o for o in reversed(ops) if o.addr < op.p2 and o.p1 == op.p1 and o.opcode in OPENERS),
                None,
            )
            exit_ = opener.p2 if opener is not None else op.addr + 1
            loops.append(Loop(op, opener, op.p2, exit_))
        elif op.opcode == "Goto" and 0 < op.p2 <= op.addr and not (op.addr >= preamble > op.p2):
            # a co-routine's rows (multi-row VALUES, INSERT ... SELECT) or a rowid set
            loops.append(Loop(op, None, op.p2, op.addr + 1))
    program = Program(ops, cursor_at, loops)
    for i, loop in enumerate(loops):
        first = loop.opener.addr if loop.opener is not None else loop.start
        enclosing = [j for j, other in enumerate(loops) if j != i and other.start <= first and loop.end <= other.end]
        program.parents[i] = min(enclosing, key=lambda j: loops[j].end - loops[j].start) if enclosing else None
    return program
