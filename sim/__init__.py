"""Wire-level simulators of the systems Hoist talks to but that cannot run here.

Each simulator speaks the real protocol so the real client libraries (kubernetes_asyncio and
kubectl, ovirtsdk4, openstacksdk) are used unchanged, and refuses what the real system
refuses. Hoist's own code never imports them: only tests, the demo and benchmarks do.
"""
