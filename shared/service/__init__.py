"""What turns a service's domain code into a running Hoist service."""
