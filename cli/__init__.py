"""``hoist``: the command-line client of Hoist's HTTP APIs.

It speaks only HTTP (the inventory, planner, orchestrator and progress routes), so it runs
anywhere a user can reach the APIs: it never imports a service.
"""
