"""The statement checker of the analysts' SQL: one read-only query over our five tables, or a refusal.

The decision is made on sqlglot's parse tree, never by matching words: the text must parse
as exactly one statement whose root is a query (SELECT, a WITH ... SELECT, or set
operations of them), no node anywhere in it may write, define or load anything (INSERT,
UPDATE, DELETE, MERGE, CREATE, DROP, ALTER, COPY, SET, SELECT ... INTO, ...), and every
table it reads must be one of the job's tables (``high_value`` or ``tormenta.high_value``,
...) or a name its own WITH clause defines. A table function (``read_parquet(...)``,
``generate_series(...)``), a quoted path (``'/etc/passwd'``, ``parquet.`/tmp/x```) or any
other table is refused. Functions whose name reads files (``read_*``) are refused anywhere.

    checked = check_query("SELECT count(*) FROM tormenta.high_value")
    checked.sql      # 'SELECT count(*) FROM high_value' (DataFusion knows the tables by their bare names)
    checked.tables   # ('high_value',)

`QueryRefused` (a `SettingsError`: exit code 2 on the command line) carries one line saying
what was refused and what is allowed. The rewrite removes only the ``tormenta.`` qualifier
from the text (by token positions), so everything else reaches the engine exactly as typed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipeline.contract.tables import DATABASE, TABLE_NAMES
from pipeline.errors import SettingsError

MAX_SQL_CHARS = 20_000
ALLOWED = "one SELECT or WITH ... SELECT query over " + ", ".join(TABLE_NAMES)
DIALECTS = {"delta-rs": None, "spark": "spark"}  # engine -> sqlglot dialect read

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its "falling back to a Command" warnings are ours to say


class QueryRefused(SettingsError):
    """A statement the analysts' SQL does not run (one line: what, and what is allowed)."""


@dataclass(frozen=True)
class CheckedQuery:
    sql: str                  # the text the engine runs (tormenta. qualifiers removed)
    tables: tuple[str, ...]   # our tables it reads, in TABLE_NAMES order


def _refuse(what: str) -> QueryRefused:
    return QueryRefused(f"{what}; allowed: {ALLOWED}")


def _forbidden_nodes():
    """Expression classes that write, define, load or change the session (those this sqlglot has)."""
    from sqlglot import exp

    names = ("Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "AlterColumn", "TruncateTable",
             "Copy", "Command", "Set", "SetItem", "Use", "LoadData", "Into", "Grant", "Revoke", "Analyze",
             "Describe", "Pragma", "Refresh", "Cache", "Uncache", "Transaction", "Commit", "Rollback", "Attach",
             "Detach", "Export", "Install", "Kill", "Summarize", "Show")
    return tuple(getattr(exp, n) for n in names if isinstance(getattr(exp, n, None), type))


def _statement_kind(node) -> str:
    """A readable name of a refused root statement ('INSERT', 'CREATE EXTERNAL TABLE', 'COPY', ...)."""
    from sqlglot import exp

    if isinstance(node, exp.Command):
        return str(node.this).upper() or "this command"
    if isinstance(node, exp.Create):
        kind = str(node.args.get("kind") or "").upper()
        props = node.args.get("properties")
        external = props is not None and any(isinstance(p, exp.ExternalProperty) for p in props.expressions)
        return "CREATE " + ("EXTERNAL " if external else "") + (kind or "")
    return type(node).__name__.upper().replace("TRUNCATETABLE", "TRUNCATE")


def check_query(sql: str, engine: str = "delta-rs") -> CheckedQuery:
    """The query as the engine runs it, or `QueryRefused` (one line)."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    text = (sql or "").strip()
    if not text:
        raise _refuse("the query is empty")
    if len(text) > MAX_SQL_CHARS:
        raise _refuse(f"the query is {len(text):,} characters long, more than {MAX_SQL_CHARS:,}")
    dialect = DIALECTS.get(engine, None)
    try:
        trees = [t for t in sqlglot.parse(text, read=dialect) if t is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QueryRefused(f"syntax error: {first[:300]}") from None
    if not trees:
        raise _refuse("the query is empty")
    if len(trees) > 1:
        raise _refuse(f"{len(trees)} statements were given; one statement at a time")
    tree = trees[0]
    while isinstance(tree, exp.Subquery):  # "(SELECT ...)" is a query too
        tree = tree.this
    if not isinstance(tree, exp.Select | exp.SetOperation):
        raise _refuse(f"{_statement_kind(tree).strip()} statements are not run here")
    forbidden = _forbidden_nodes()
    for node in tree.walk():
        if isinstance(node, forbidden):
            raise _refuse(f"{_statement_kind(node).strip()} is not allowed inside a query")
        if isinstance(node, exp.Select) and node.args.get("into") is not None:
            raise _refuse("SELECT ... INTO writes a table")
        if isinstance(node, exp.Func):
            name = (node.sql_name() if not isinstance(node, exp.Anonymous) else str(node.this)).lower()
            if name.startswith("read_") or name in ("readparquet", "readcsv", "readjson"):
                raise _refuse(f"the function {name}() reads files")
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    used: set[str] = set()
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            func = table.this.sql_name() if isinstance(table.this, exp.Func) else type(table.this).__name__
            fn = str(table.this.this) if isinstance(table.this, exp.Anonymous) else func
            raise _refuse(f"the table function {fn.lower()}(...) is not one of our tables")
        name, db, catalog = table.name, table.db, table.catalog
        if catalog or (db and db.lower() != DATABASE):
            raise _refuse(f"{table.sql(dialect=dialect)!s} is not one of our tables")
        if not db and name.lower() in ctes:
            continue
        if name not in TABLE_NAMES:  # exact: a path or another name is refused
            raise _refuse(f"{name!r} is not one of our tables")
        used.add(name)
    return CheckedQuery(_unqualified(text, dialect), tuple(n for n in TABLE_NAMES if n in used))


def _unqualified(text: str, dialect: str | None) -> str:
    """The text with every ``tormenta.<our table>`` written ``<our table>`` (by token positions)."""
    from sqlglot import tokenize
    from sqlglot.tokens import TokenType

    tokens = tokenize(text, read=dialect)
    cut: list[tuple[int, int]] = []
    for a, dot, b in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if (dot.token_type == TokenType.DOT and a.text.lower() == DATABASE and b.text in TABLE_NAMES
                and a.token_type in (TokenType.VAR, TokenType.IDENTIFIER)):
            cut.append((a.start, b.start))
    # The quote of a quoted name ("tormenta") sits outside the token's span: start at the quote.
    out, pos = [], 0
    for start, end in cut:
        if start > 0 and text[start - 1] in "\"`":
            start -= 1
        if end > 0 and text[end - 1] in "\"`":
            end -= 1
        out.append(text[pos:start])
        pos = end
    out.append(text[pos:])
    return "".join(out)
