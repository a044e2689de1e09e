import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("insights", "0011_import_undo_and_as_of"),
        ("planning", "0011_workshop_sessions"),
    ]

    operations = [
        migrations.CreateModel(
            name="PlanDataSource",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "engine",
                    models.CharField(
                        choices=[
                            ("imported", "Imported into Outside-In"),
                            ("spark", "A table on Apache Spark"),
                        ],
                        default="imported",
                        max_length=10,
                    ),
                ),
                (
                    "url",
                    models.CharField(
                        blank=True, max_length=300, verbose_name="Spark Connect address"
                    ),
                ),
                ("table", models.CharField(blank=True, max_length=500)),
                (
                    "columns",
                    models.JSONField(blank=True, default=dict, verbose_name="column mapping"),
                ),
                (
                    "token_env",
                    models.CharField(blank=True, max_length=100, verbose_name="token variable"),
                ),
                ("last_checked_at", models.DateTimeField(blank=True, null=True)),
                ("last_check_ok", models.BooleanField(default=False)),
                ("last_check_message", models.TextField(blank=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "plan",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="data_source",
                        to="planning.plan",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("engine__in", ["imported", "spark"])),
                        name="data_source_engine_valid",
                    )
                ],
            },
        ),
    ]
