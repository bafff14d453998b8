"""PostgreSQL plumbing shared by the services: engines, migrations, inbox and outbox."""
