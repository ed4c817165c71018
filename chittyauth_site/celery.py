import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chittyauth_site.settings")

app = Celery("chittyauth")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _create_local_broker_folders(sender: Celery, **kwargs) -> None:
    """The embedded filesystem broker needs its folders before the first message."""
    folders = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if folders.get(key):
            os.makedirs(folders[key], exist_ok=True)


@signals.worker_init.connect
@signals.beat_init.connect
def _start_tracing(**kwargs) -> None:
    # Imported here: this module is imported with the project package, before Django's settings are set up.
    from kernel.tracing import start_tracing

    start_tracing()


@signals.worker_process_shutdown.connect
def _flush_traces(**kwargs) -> None:
    """A prefork child leaves with os._exit, past the exit handlers that would export its last spans."""
    from kernel.tracing import flush_traces

    flush_traces()
