"""The web console: the browser pages under ``/ui`` and the four APIs on the same origin.

It keeps no state and holds no credentials: the pages call the HTTP APIs with the token the
user typed, and the console forwards each ``/api/v1/...`` call, token included, to the
service that owns the path (``shared.apiroutes``), which checks the token itself. Behind the
Helm chart's Ingress the APIs are already on one origin and only ``/ui`` reaches the console;
everywhere else (``make demo DEMO_ARGS=--keep``, ``kubectl port-forward``) the console is the
one URL a user needs. See docs/console.md.
"""

PORT = 8106
#: What the console itself serves (an Ingress routes these to it; the APIs go to the services).
ROUTES = ("/ui",)
