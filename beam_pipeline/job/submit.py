"""Submitting the built pipeline: the checks only the runner's options can tell, then `p.run()`.

* A Dataflow `--template_location` run builds and stages the job as a template and runs
  nothing (`template_location`); with `--overwrite` over an output that has content it is
  refused, since the template would write into the staging folder this command replaces
  `output.dir` from only after a run it never sees.
* An `EXTERNAL` environment run by a runner in this process (`--job_endpoint=embed`, or the
  local runner) needs a worker pool at `--environment_config`: it is checked before the job
  starts (`check_worker_pool`), since a pool that cannot start an SDK worker (its `python`
  has no Beam) makes the runner wait for the worker forever, without an error.
"""

import logging
import os
import secrets
import socket
import threading
from typing import List, Optional, Sequence

from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions,
                                                  PortableOptions, StandardOptions)

from beam_pipeline.config import ConfigError
from beam_pipeline.outputs import storage

# Seconds a worker pool gets to start one SDK worker that connects back (a worker imports
# Beam first: a few seconds on an idle machine, more on a busy one).
WORKER_START_TIMEOUT_ENV = "BEAM_PIPELINE_WORKER_START_TIMEOUT"
DEFAULT_WORKER_START_TIMEOUT = 120.0
CONNECT_TIMEOUT = 10.0
# Runners that run the job in this process, so they reach the pool from this machine.
IN_PROCESS_RUNNERS = ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner")


class WorkerPoolUnavailable(ConfigError):
    """The `EXTERNAL` worker pool refuses connections or starts no SDK worker (exit 2)."""


def _runner(options: PipelineOptions) -> str:
    return (options.view_as(StandardOptions).runner or "").split(".")[-1]


def template_location(options: PipelineOptions) -> Optional[str]:
    """Where a Dataflow run writes its template instead of running, or None."""
    if not _runner(options).endswith("DataflowRunner"):
        return None  # other runners ignore the option and run the job
    return options.view_as(GoogleCloudOptions).template_location or None


def external_worker_pool(options: PipelineOptions) -> Optional[str]:
    """`host:port` of the `EXTERNAL` worker pool a runner in this process will ask for
    workers, or None (another environment, or a remote job service: the address is then
    the remote runner's to reach, not this machine's)."""
    portable = options.view_as(PortableOptions)
    if (portable.environment_type or "").upper() != "EXTERNAL":
        return None
    runner = _runner(options)
    in_process = runner in IN_PROCESS_RUNNERS or (
        runner == "PortableRunner" and portable.job_endpoint in (None, "", "embed"))
    if not in_process:
        return None
    address = portable.environment_config or portable.lookup_environment_option(
        "external_service_address")
    return address or None


def workers_on_this_machine(options: PipelineOptions) -> bool:
    """True for the portable runner with the embedded job service and SDK workers on this
    machine (`LOOPBACK`, or an `EXTERNAL` pool at a loopback address): they share its disk,
    so the local progress report works for them."""
    portable = options.view_as(PortableOptions)
    if _runner(options) != "PortableRunner" or portable.job_endpoint not in (None, "",
                                                                            "embed"):
        return False
    kind = (portable.environment_type or "").upper()
    if kind == "LOOPBACK":
        return True
    address = external_worker_pool(options)
    return bool(address) and _split(address)[0] in ("localhost", "127.0.0.1", "::1")


def _split(address: str):
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "localhost"
    try:
        return host, int(port)
    except ValueError:
        raise WorkerPoolUnavailable(
            f"--environment_config={address}: the EXTERNAL worker pool must be host:port "
            "(where `python -m apache_beam.runners.worker.worker_pool_main "
            "--service_port=PORT` listens)") from None


def _timeout() -> float:
    value = os.environ.get(WORKER_START_TIMEOUT_ENV)
    try:
        return float(value) if value else DEFAULT_WORKER_START_TIMEOUT
    except ValueError:
        raise ConfigError(f"{WORKER_START_TIMEOUT_ENV}={value!r}: not a number of "
                          "seconds") from None


def check_worker_pool(address: str, timeout: Optional[float] = None) -> None:
    """Raises `WorkerPoolUnavailable` unless the worker pool at `address` accepts a
    connection and starts an SDK worker that connects back within `timeout` seconds
    (default: the `BEAM_PIPELINE_WORKER_START_TIMEOUT` env var, else 120 s).

    The probe asks the pool for one worker whose control endpoint is a server of ours on
    loopback; the worker connects, its stream is closed at once (it exits), and the pool
    is asked to stop it."""
    timeout = _timeout() if timeout is None else timeout
    host, port = _split(address)
    start_hint = (f"start one with `python -m apache_beam.runners.worker.worker_pool_main "
                  f"--service_port={port}`, with a Python that has this project installed "
                  "first on its PATH")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as e:
        raise WorkerPoolUnavailable(
            f"no Beam worker pool at {address} (--environment_config): connecting failed "
            f"({e.strerror or e}); {start_hint}") from None
    # Imported here: only EXTERNAL runs need gRPC and the Fn API protos.
    import grpc  # pylint: disable=import-outside-toplevel
    from apache_beam.portability.api import (  # pylint: disable=import-outside-toplevel
        beam_fn_api_pb2, beam_fn_api_pb2_grpc, endpoints_pb2)

    connected = threading.Event()

    class _Control(beam_fn_api_pb2_grpc.BeamFnControlServicer):
        def Control(self, request_iterator, context):  # pylint: disable=invalid-name
            connected.set()
            return iter(())

    from concurrent import futures  # pylint: disable=import-outside-toplevel
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    beam_fn_api_pb2_grpc.add_BeamFnControlServicer_to_server(_Control(), server)
    control_port = server.add_insecure_port("localhost:0")
    server.start()
    channel = grpc.insecure_channel(address)
    worker_id = f"beam-pipeline-probe-{secrets.token_hex(4)}"
    try:
        pool = beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(channel)
        endpoint = endpoints_pb2.ApiServiceDescriptor(url=f"localhost:{control_port}")
        try:
            response = pool.StartWorker(
                beam_fn_api_pb2.StartWorkerRequest(
                    worker_id=worker_id, control_endpoint=endpoint, logging_endpoint=endpoint,
                    artifact_endpoint=endpoint, provision_endpoint=endpoint),
                timeout=CONNECT_TIMEOUT)
        except grpc.RpcError as e:
            raise WorkerPoolUnavailable(
                f"{address} (--environment_config) accepts connections but is not a Beam "
                f"worker pool: StartWorker failed ({e.code().name}); {start_hint}") from None
        if response.error:
            raise WorkerPoolUnavailable(
                f"the Beam worker pool at {address} could not start a worker: "
                f"{response.error.strip().splitlines()[-1]}")
        if not connected.wait(timeout):
            raise WorkerPoolUnavailable(
                f"the Beam worker pool at {address} (--environment_config) started no SDK "
                f"worker that connected within {timeout:g} s (set {WORKER_START_TIMEOUT_ENV} "
                "for more time): the pool runs workers as `python` from its own PATH, which "
                "must be a Python with apache_beam and this project installed")
        logging.info("worker pool at %s started a worker", address)
    finally:
        try:
            beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(channel).StopWorker(
                beam_fn_api_pb2.StopWorkerRequest(worker_id=worker_id), timeout=CONNECT_TIMEOUT)
        except grpc.RpcError:
            pass
        channel.close()
        server.stop(None)


def _remove(folders: Sequence[str]) -> None:
    for folder in folders:
        storage.delete_tree(folder)


def _silence(reporter) -> None:
    """Stops a progress `Reporter`'s thread without its final line (nothing has run)."""
    reporter._stop.set()  # pylint: disable=protected-access  (progress.Reporter has no stop)
    reporter._thread.join()  # pylint: disable=protected-access


def run(p, options: PipelineOptions, staged: bool = False, written: List[str] = (),
        reporter=None):
    """Checks what the runner's options ask for, then `p.run()`; returns its result.

    `staged`: the output is being built in a staging folder (`--overwrite`). `written`:
    the folders this run wrote before submitting, removed if the job is refused here (the
    output folder was empty, so it is empty again and the command can simply be rerun).
    `reporter`: the progress reporter already started, stopped if the job is refused.
    """
    try:
        if template_location(options) and staged:
            raise ConfigError(
                "--template_location with --overwrite over an output that has content: the "
                "template's job would write into this command's staging folder, which is "
                "never published; template an empty (or new) output.dir instead")
        address = external_worker_pool(options)
        if address:
            check_worker_pool(address)
    except ConfigError:
        if reporter is not None:
            _silence(reporter)
        _remove(written)
        raise
    return p.run()
