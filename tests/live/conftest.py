import pytest_asyncio
from channels.db import database_sync_to_async
from django.db import connections


@pytest_asyncio.fixture(autouse=True)
async def _close_worker_thread_connections():
    """Consumers and helpers reach the database from asgiref's worker thread, whose
    connections outlive the test (CONN_MAX_AGE); close them so the test database can be dropped."""
    yield
    await database_sync_to_async(connections.close_all)()
