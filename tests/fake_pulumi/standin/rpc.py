"""The gRPC side of an operation: the ResourceMonitor and Engine services the program talks to,
and the `Run` call on the caller's language runtime (`--client`).

Sources: proto/pulumi/resource.proto, engine.proto, language.proto (stubs in
pulumi.runtime.proto, loaded by `stubs`); pkg/resource/deploy/source_eval.go (resmon:
RegisterResource, RegisterResourceOutputs, ReadResource, SupportsFeature; Run with the monitor
address);
sdk/python/lib/pulumi/automation/_server.py (the inline LanguageServer: it reads the engine address
from `args[0]` and logs "python inline source runtime error" for an exception in the program).
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from google.protobuf import empty_pb2

from .engine import Abort, Deployment, Res, StepFailed
from .props import from_struct, to_struct
from .stubs import stub

engine_pb2 = stub("engine_pb2")
engine_pb2_grpc = stub("engine_pb2_grpc")
language_pb2 = stub("language_pb2")
language_pb2_grpc = stub("language_pb2_grpc")
resource_pb2 = stub("resource_pb2")
resource_pb2_grpc = stub("resource_pb2_grpc")

SEVERITY = {0: "debug", 1: "info", 2: "warning", 3: "error"}
SHUT_DOWN = "resource monitor shut down while waiting on step's done channel"


class Monitor(resource_pb2_grpc.ResourceMonitorServicer):  # type: ignore[misc]
    def __init__(self, d: Deployment) -> None:
        self.d = d
        self.root = ""

    def SupportsFeature(self, request: Any, context: Any) -> Any:
        # Only secrets: the stand-in declines resource references and output values, as an
        # engine may; the SDK then sends plain values (sdk/python/lib/pulumi/runtime/settings.py).
        return resource_pb2.SupportsFeatureResponse(hasSupport=request.id == "secrets")

    def GetDeploymentInfo(self, request: Any, context: Any) -> Any:
        o = self.d.o
        return resource_pb2.DeploymentInfo(
            project=o.project,
            stack=o.stack,
            organization=o.org,
            dryRun=o.preview,
            supportedFeatures=[resource_pb2.RESOURCE_MONITOR_FEATURE_SECRETS],
        )

    def SignalAndWaitForShutdown(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()

    def RegisterPackage(self, request: Any, context: Any) -> Any:
        # Parameterized packages are not modelled: a reference is all the SDK needs back.
        return resource_pb2.RegisterPackageResponse(ref=f"{request.name}-{request.version}")

    def RegisterResource(self, request: Any, context: Any) -> Any:
        d = self.d
        goal = {
            "type": request.type,
            "name": request.name,
            "parent": request.parent,
            "custom": request.custom,
            "inputs": from_struct(request.object),
            "provider": request.provider,
            "version": request.version,
            "dependencies": list(request.dependencies),
            "propertyDependencies": {
                k: list(v.urns) for k, v in request.propertyDependencies.items()
            },
            "protect": request.protect,
            "ignoreChanges": list(request.ignoreChanges),
            "replaceOnChanges": list(request.replaceOnChanges),
        }
        if request.deleteBeforeReplaceDefined or request.deleteBeforeReplace:
            goal["deleteBeforeReplace"] = request.deleteBeforeReplace
        rejected = d.o.knobs.get("program_error")
        if (
            rejected
            and request.custom
            and not request.type.startswith("pulumi:")
            and not d.rejected
        ):
            # The `program_error` knob: the monitor rejects the program's first custom resource;
            # the SDK raises the error inside the program (runtime/settings.py,
            # grpc_error_to_exception).
            d.rejected = True
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(rejected) + d.o.leak)
        try:
            state, unknown = d.register(goal)
        except StepFailed as e:
            # The resource's step failed; the program hears so (Result FAIL) while the engine
            # stops the deployment (step_executor.go).
            return resource_pb2.RegisterResourceResponse(urn=e.urn, result=resource_pb2.FAIL)
        except Abort:
            context.abort(grpc.StatusCode.UNAVAILABLE, SHUT_DOWN)
        return _response(state, unknown)

    def RegisterResourceOutputs(self, request: Any, context: Any) -> Any:
        try:
            self.d.register_outputs(request.urn, from_struct(request.outputs))
        except Abort:
            context.abort(grpc.StatusCode.UNAVAILABLE, SHUT_DOWN)
        return empty_pb2.Empty()

    def ReadResource(self, request: Any, context: Any) -> Any:
        goal = {
            "type": request.type,
            "name": request.name,
            "id": request.id,
            "parent": request.parent,
            "inputs": from_struct(request.properties),
            "provider": request.provider,
            "version": request.version,
        }
        try:
            state = self.d.read(goal)
        except Abort:
            context.abort(grpc.StatusCode.UNAVAILABLE, SHUT_DOWN)
        return resource_pb2.ReadResourceResponse(urn=state.urn, properties=to_struct(state.outputs))

    def Invoke(self, request: Any, context: Any) -> Any:
        # No provider functions are played: the program gets the error an invoke failure gives.
        context.abort(
            grpc.StatusCode.UNKNOWN,
            f"invocation of {request.tok} returned an error: "
            "the test stand-in plays no provider functions",
        )


def _response(state: Res, unknown: bool) -> Any:
    # The stand-in builds its messages with the installed SDK's own protobuf classes. A real CLI
    # sends `unknown` (a newer field of RegisterResourceResponse, proto/pulumi/resource.proto)
    # whatever the SDK's version, and an SDK whose proto lacks it drops it on the wire; an older
    # SDK's classes refuse it as a keyword, so the stand-in leaves it out where they lack it.
    fields = resource_pb2.RegisterResourceResponse.DESCRIPTOR.fields_by_name
    return resource_pb2.RegisterResourceResponse(
        urn=state.urn,
        id=state.id,
        object=to_struct(state.outputs),
        result=resource_pb2.SUCCESS,
        **({"unknown": unknown} if "unknown" in fields else {}),
    )


class EngineService(engine_pb2_grpc.EngineServicer):  # type: ignore[misc]
    def __init__(self, d: Deployment) -> None:
        self.d = d
        self.root = ""

    def Log(self, request: Any, context: Any) -> Any:
        severity = SEVERITY.get(request.severity, "info")
        # Debug messages reach the event stream only with --debug (pkg/engine: diagDebugEvent).
        if severity != "debug" and not self.d.stopped:
            self.d.events.diag(severity, request.message, request.urn, request.ephemeral)
        return empty_pb2.Empty()

    def GetRootResource(self, request: Any, context: Any) -> Any:
        return engine_pb2.GetRootResourceResponse(urn=self.root)

    def SetRootResource(self, request: Any, context: Any) -> Any:
        self.root = request.urn
        return engine_pb2.SetRootResourceResponse()

    def RequirePulumiVersion(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()


def serve(d: Deployment) -> tuple[Any, str, str]:
    """Start the monitor and engine servers: (server, monitor address, engine address)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    resource_pb2_grpc.add_ResourceMonitorServicer_to_server(Monitor(d), server)
    engine_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    engine_pb2_grpc.add_EngineServicer_to_server(EngineService(d), engine_server)
    port = server.add_insecure_port("127.0.0.1:0")
    engine_port = engine_server.add_insecure_port("127.0.0.1:0")
    server.start()
    engine_server.start()
    return (server, engine_server), f"127.0.0.1:{port}", f"127.0.0.1:{engine_port}"


def run(client: str, d: Deployment, monitor: str, engine: str, cwd: str, parallel: int) -> Any:
    """Call Run on the caller's language runtime (source_eval.go forkRun -> langruntime Run)."""
    o = d.o
    config = {k: v for k, (v, _) in o.config.items()}
    request = language_pb2.RunRequest(
        project=o.project,
        stack=o.stack,
        pwd=cwd,
        program=".",
        args=[engine],
        config=config,
        configSecretKeys=sorted(k for k, (_, secret) in o.config.items() if secret),
        dryRun=o.preview,
        parallel=parallel,
        monitor_address=monitor,
        organization=o.org,
    )
    channel = grpc.insecure_channel(client)
    return channel, language_pb2_grpc.LanguageRuntimeStub(channel).Run.future(request)
