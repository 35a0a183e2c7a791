"""What every side agrees on: settings, the Celery app, queue names, schemas, the model catalogue."""
