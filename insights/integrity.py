"""What the events' foreign keys would promise, kept by triggers instead.

PostgreSQL checks a foreign key row by row: for an import of a million events that cost more
than storing the rows (about 6 s of 18, measured by `make bench imports`). These triggers keep
the same promises set-based:

- an event's plan and import exist: checked once per statement over the distinct ids it wrote,
  locking those rows FOR KEY SHARE as a foreign key does, so neither can vanish meanwhile;
- deleting a plan or an import deletes its events in the database itself (never collected in
  Python first), whichever way the row goes: the ORM, the admin, a cascade or plain SQL.

SQLite (the embedded default) gets the same rules as row triggers, which cost it nothing.

`install` is idempotent. Migration 0008 runs it, and so does every `migrate` (post_migrate):
SQLite drops a table's triggers when Django rebuilds the table, so a later migration of the
events, plans or imports cannot lose them silently.
"""

from __future__ import annotations

from typing import Any


def _cascade(name: str, parent: str, column: str) -> list[str]:
    """A row deleted from `parent` deletes the events whose `column` names it."""
    # Our own names only, never input.
    return [
        f"""
        CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM insights_event WHERE {column} = OLD.id;
            RETURN NULL;
        END $$
        """,  # noqa: S608
        f"CREATE OR REPLACE TRIGGER {name} AFTER DELETE ON {parent} "
        f"FOR EACH ROW EXECUTE FUNCTION {name}()",
    ]


POSTGRESQL_INSTALL = [
    """
    CREATE OR REPLACE FUNCTION insights_event_parents_exist() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        plans bigint[];
        imports bigint[];
        missing bigint;
    BEGIN
        SELECT array_agg(DISTINCT plan_id), array_agg(DISTINCT source_import_id)
        INTO plans, imports
        FROM (SELECT DISTINCT plan_id, source_import_id FROM new_events) AS written;
        IF plans IS NULL THEN
            RETURN NULL;
        END IF;
        PERFORM 1 FROM planning_plan WHERE id = ANY (plans) FOR KEY SHARE;
        SELECT u.wanted INTO missing FROM unnest(plans) AS u(wanted)
        WHERE NOT EXISTS (SELECT 1 FROM planning_plan p WHERE p.id = u.wanted) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
                MESSAGE = format('insights_event: no plan with id %s', missing);
        END IF;
        imports := array_remove(imports, NULL);
        PERFORM 1 FROM insights_import WHERE id = ANY (imports) FOR KEY SHARE;
        SELECT u.wanted INTO missing FROM unnest(imports) AS u(wanted)
        WHERE NOT EXISTS (SELECT 1 FROM insights_import i WHERE i.id = u.wanted) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
                MESSAGE = format('insights_event: no import with id %s', missing);
        END IF;
        RETURN NULL;
    END $$
    """,
    *(
        f"CREATE OR REPLACE TRIGGER insights_event_parents_on_{event} AFTER {event} "
        "ON insights_event REFERENCING NEW TABLE AS new_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION insights_event_parents_exist()"
        for event in ("insert", "update")
    ),
    *_cascade("insights_plan_delete_events", "planning_plan", "plan_id"),
    *_cascade("insights_import_delete_events", "insights_import", "source_import_id"),
    # An import's rows lie together in the table: a block-range index finds them at almost no
    # cost to each insert (a B-tree cost 0.3 s per million rows).
    """
    CREATE INDEX IF NOT EXISTS event_source_import
    ON insights_event USING brin (source_import_id)
    """,
]

POSTGRESQL_UNINSTALL = [
    "DROP INDEX IF EXISTS event_source_import",
    "DROP TRIGGER IF EXISTS insights_import_delete_events ON insights_import",
    "DROP FUNCTION IF EXISTS insights_import_delete_events()",
    "DROP TRIGGER IF EXISTS insights_plan_delete_events ON planning_plan",
    "DROP FUNCTION IF EXISTS insights_plan_delete_events()",
    "DROP TRIGGER IF EXISTS insights_event_parents_on_update ON insights_event",
    "DROP TRIGGER IF EXISTS insights_event_parents_on_insert ON insights_event",
    "DROP FUNCTION IF EXISTS insights_event_parents_exist()",
]

_SQLITE_CHECK = """
    WHEN NOT EXISTS (SELECT 1 FROM planning_plan WHERE id = NEW.plan_id)
      OR (NEW.source_import_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM insights_import WHERE id = NEW.source_import_id))
    BEGIN SELECT RAISE(ABORT, 'insights_event: no such plan or import'); END
"""

SQLITE_INSTALL = [
    "CREATE TRIGGER IF NOT EXISTS insights_event_parents_on_insert "
    "BEFORE INSERT ON insights_event FOR EACH ROW" + _SQLITE_CHECK,
    "CREATE TRIGGER IF NOT EXISTS insights_event_parents_on_update "
    "BEFORE UPDATE OF plan_id, source_import_id ON insights_event FOR EACH ROW" + _SQLITE_CHECK,
    "CREATE TRIGGER IF NOT EXISTS insights_plan_delete_events AFTER DELETE ON planning_plan "
    "FOR EACH ROW BEGIN DELETE FROM insights_event WHERE plan_id = OLD.id; END",
    "CREATE TRIGGER IF NOT EXISTS insights_import_delete_events AFTER DELETE ON insights_import "
    "FOR EACH ROW BEGIN DELETE FROM insights_event WHERE source_import_id = OLD.id; END",
    "CREATE INDEX IF NOT EXISTS event_source_import ON insights_event (source_import_id)",
]

SQLITE_UNINSTALL = [
    "DROP INDEX IF EXISTS event_source_import",
    "DROP TRIGGER IF EXISTS insights_import_delete_events",
    "DROP TRIGGER IF EXISTS insights_plan_delete_events",
    "DROP TRIGGER IF EXISTS insights_event_parents_on_update",
    "DROP TRIGGER IF EXISTS insights_event_parents_on_insert",
]

TRIGGERS = [
    "insights_event_parents_on_insert",
    "insights_event_parents_on_update",
    "insights_plan_delete_events",
    "insights_import_delete_events",
]


def _statements(vendor: str, install: bool) -> list[str]:
    if vendor == "postgresql":
        return POSTGRESQL_INSTALL if install else POSTGRESQL_UNINSTALL
    if vendor == "sqlite":
        return SQLITE_INSTALL if install else SQLITE_UNINSTALL
    raise NotImplementedError(f"Outside-In runs on PostgreSQL or SQLite, not {vendor}.")


def install(connection: Any) -> None:
    with connection.cursor() as cursor:
        for statement in _statements(connection.vendor, install=True):
            cursor.execute(statement)


def uninstall(connection: Any) -> None:
    with connection.cursor() as cursor:
        for statement in _statements(connection.vendor, install=False):
            cursor.execute(statement)


def installed(connection: Any) -> set[str]:
    """The names of the triggers above that the database holds."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname = ANY (%s)",
                [TRIGGERS],
            )
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        return {name for (name,) in cursor.fetchall()} & set(TRIGGERS)
