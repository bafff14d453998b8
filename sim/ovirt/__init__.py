"""An oVirt engine: the REST API, SSO and image transfers served by a real ovirt-imageio."""
