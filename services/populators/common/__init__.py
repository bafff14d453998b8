"""What every populator needs: arguments, the volume writer and the metrics endpoint.

A populator is a short-lived program in a pod; it copies one source disk into one volume
and exits 0 only when every byte is written and synced. The pieces here are generic, so a
populator is mostly its source protocol:

* ``args``: ``parser()`` with the Forklift-compatible flags (``--volume-path --secret-name
  --cr-name --cr-namespace --owner-uid --pvc-size``, plus ``--metrics-port``); add the
  source's flags (``--engine-url --disk-id``, ``--endpoint --image-id``) and parse.
  ``Credentials.from_env()`` reads the Secret's keys from the environment (``user``,
  ``password``, ``cacert``, ``insecureSkipVerify``, ``fingerprint``).
* ``tls``: ``TlsPolicy(creds)``: the client context (CA bundle, pin, or skip) and the pin
  check; ``TlsError`` is never worth a retry.
* ``http``: ``HttpConnection(host, port, policy, timeout)``: keep-alive HTTP/1.1 whose TLS
  is decrypted from memory and whose bodies go straight into your buffers (``readinto``);
  use it for the bulk download, it costs a third less CPU per GiB than ``ssl`` sockets.
* ``volume``: ``VolumeWriter.open(volume_path, size[, fresh])`` picks Filesystem (``disk.img``) or
  Block, ``write()`` from ``aligned_buffer()`` memory with O_DIRECT when possible,
  ``zero()`` for holes, ``finish()`` to fsync.
* ``metrics``: ``Progress(metric, owner_uid)`` and ``serving(progress, port)``,
  Prometheus text over TLS with a self-signed certificate (``selfsigned``: a P-256 key and
  certificate made without importing ``cryptography``, which cost ~70 ms of CPU per start).
* ``failure``: ``PopulatorFailure`` and ``run_main()``: one clear line on stderr and a
  non-zero exit for every failure.
"""
