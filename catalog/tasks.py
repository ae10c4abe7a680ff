from celery import shared_task

from . import imports, services


@shared_task(name="catalog.tasks.suggestion_model_train")
def suggestion_model_train(model_id: int) -> str:
    return services.suggestion_model_train(model_id=model_id).status


@shared_task(name="catalog.tasks.import_job_execute")
def import_job_execute(job_id: int) -> str:
    return imports.import_job_execute_now(job_id=job_id).status
