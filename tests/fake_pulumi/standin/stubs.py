"""The Pulumi SDK's generated gRPC stubs (`pulumi/runtime/proto`), loaded without the SDK.

The Go CLI holds no Python SDK. Importing `pulumi.runtime.proto` would first run
`pulumi/__init__.py`: the whole SDK, OpenTelemetry included, some 0.15 s of CPU on every
operation the stand-in runs. The stubs import one another relatively (`from . import
alias_pb2`), so they load as submodules of a package of their own whose path is the SDK's
proto directory; only the stubs a command uses are loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

PACKAGE = "_standin_pulumi_proto"


def stub(name: str) -> Any:
    """The generated module `name` (`resource_pb2`, `engine_pb2_grpc`, ...)."""
    if PACKAGE not in sys.modules:
        sdk = importlib.util.find_spec("pulumi")  # finds the package without importing it
        assert sdk is not None and sdk.submodule_search_locations is not None
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(Path(sdk.submodule_search_locations[0]) / "runtime" / "proto")]
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.{name}")
