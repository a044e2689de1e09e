"""`manage.py import_events SLUG FILE [--skip-invalid] [--map SOURCE=TARGET ...]` (DOMAIN §7)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from insights.management.arguments import add_plan_argument, plan_from
from insights.models import Import
from insights.services.imports import FileRejected, create_import, run_import


class Command(BaseCommand):
    help = "Import customer events from a CSV file into a plan, and print what was imported."

    def add_arguments(self, parser: CommandParser) -> None:
        add_plan_argument(parser)
        parser.add_argument("file", help="a CSV file of events (comma, semicolon or tab)")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="import the valid rows and reject the others (default: all or nothing)",
        )
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="SOURCE=TARGET",
            help="read column SOURCE as event field TARGET (e.g. --map client=customer_id)",
        )

    def handle(self, *args, file: str, skip_invalid: bool, map: list[str], **options):
        plan = plan_from(options)
        mapping = {}
        for item in map:
            source, sep, target = item.partition("=")
            if not sep or not source or not target:
                raise CommandError(f"--map takes SOURCE=TARGET, not “{item}”.")
            mapping[source] = target.strip().lower()
        mode = Import.Mode.SKIP_INVALID if skip_invalid else Import.Mode.ALL_OR_NOTHING
        try:
            with open(file, "rb") as upload:
                record = create_import(plan, upload, file, mode=mode, mapping=mapping)
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}.") from None
        except FileRejected as rejection:
            raise CommandError(str(rejection)) from None
        done = run_import(record.pk)
        assert done is not None  # a new import is always claimable
        self._report(done)
        if done.status != Import.Status.SUCCEEDED:
            raise CommandError(done.message or "The file was rejected.")

    def _report(self, record: Import) -> None:
        out = self.stdout
        out.write(
            f"{record.original_name}: {record.rows_read:,} rows read, "
            f"{record.rows_imported:,} imported, {record.rows_duplicate:,} duplicates skipped, "
            f"{record.rows_rejected:,} rejected."
        )
        for error in record.errors:
            column = f" {error['column']}" if error["column"] else ""
            value = f" “{error['value']}”" if error["value"] else ""
            out.write(f"  line {error['line']}{column}{value}: {error['reason']}")
        hidden = record.rows_rejected - len(record.errors)
        if hidden > 0:
            out.write(f"  … and {hidden:,} more rejected rows.")
        if record.rejected_file:
            out.write(f"Rejected rows: {record.rejected_file.path}")
