from django.apps import AppConfig


class PlanningConfig(AppConfig):
    name = "planning"

    def ready(self) -> None:
        # Celery finds planning/tasks.py by itself; the sessions' task sits beside the sessions
        # (planning/tasks.py cannot import them: planning's services import it), so it is
        # registered here, in every process that may send or run it.
        from .sessions import tasks  # noqa: F401
