"""What every populator needs: arguments, the volume writer and the metrics endpoint.

A populator is a short-lived program in a pod; it copies one source disk into one volume
and exits 0 only when every byte is written and synced. The pieces here are generic, so a
populator is mostly its source protocol:

* ``args``: ``parser()`` with the Forklift-compatible flags (``--volume-path --secret-name
  --cr-name --cr-namespace --owner-uid --pvc-size``, plus ``--metrics-port``); add the
  source's flags (``--engine-url --disk-id``, ``--endpoint --image-id``) and parse.
  ``Credentials.from_env()`` reads the Secret's keys from the environment (``user``,
  ``password``, ``cacert``, ``insecureSkipVerify``, ``fingerprint``).
* ``tls``: ``TlsPolicy(creds)`` builds the client context and ``connection(host, port)``
  keep-alive HTTPS connections that check a pinned fingerprint; ``TlsError`` is never
  worth a retry.
* ``volume``: ``VolumeWriter.open(volume_path, size)`` picks Filesystem (``disk.img``) or
  Block, ``write()`` from ``aligned_buffer()`` memory with O_DIRECT when possible,
  ``zero()`` for holes, ``finish()`` to fsync.
* ``metrics``: ``Progress(metric, owner_uid)`` and ``MetricsServer.start(progress, port)``,
  Prometheus text over TLS with a self-signed certificate.
* ``failure``: ``PopulatorFailure`` and ``run_main()``: one clear line on stderr and a
  non-zero exit for every failure.
"""
