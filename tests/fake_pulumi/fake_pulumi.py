"""A stand-in for the Pulumi CLI that runs the caller's inline program as the real CLI does.

Tests put tests/fake_pulumi first on PATH and drive it through the REAL pulumi.automation code.
`preview`, `up`, `refresh --run-program` and `destroy --run-program` call `Run` on the language
runtime at `--client` with a ResourceMonitor and an Engine service of the stand-in's own; the
program's registrations become steps (URNs, default providers, diff/replace, targets, deletes)
against the stack's real DIY state files, locks and history (package `standin/`). Every
behaviour names the pulumi/pulumi (or provider) file it follows beside the code. It knows
nothing about any particular program. No cloud and no network exist: the stand-in plays every
provider (create returns the inputs as outputs plus an id) and plugins are directories under
$PULUMI_HOME/plugins.

What the real stack (scripts/realstack, tests/realstack.py) shows is tested there, and the
stand-in's tests of it were retired: interrupts in the middle of an update and a CLI killed with
SIGKILL (tests/test_real_engine.py), the --expect-weight race against the CLI's lock, a state
changed without a history entry, rollouts against the real Prometheus, and the engine contract
(tests/test_engine_contract.py, the real CLI alone). The stand-in stays for what the real stack
cannot be made to produce, or only in minutes where the tests need it hundreds of times: shared
backends (s3://, azblob://, gs://, Pulumi Cloud and its own revision numbers), a provider failing
a chosen step (`fail`), the program refused by the monitor, a plugin download failing, a broken
`pulumi version`, failure texts that leak the passphrase, a lock held for as long as a test
needs, and the many command-level tests that would each cost a real provider and API server
tens of seconds. Its SIGINT handling (operation.py) follows cancellation_scope.go for those
tests' own interrupts.

Environment:
  FAKE_PULUMI_LOG      append one JSON line per invocation: {"argv", "cwd", "env", "pid"}; "pid" is
                       the process running the command (a signal sent to it reaches the command
                       directly; with FAKE_PULUMI_ZYGOTE, the `pulumi` process forwards the same)
  FAKE_PULUMI_ZYGOTE   the socket of a warm stand-in server (zygote.py, started by the tests'
                       fixture): `pulumi` hands it the call instead of starting Python afresh
  FAKE_PULUMI_SHIM     the program that does the handing over (shim.c, built by the fixture);
                       both variables are needed for it
  FAKE_PULUMI_STATE    where s3://, azblob://, gs:// buckets and the https:// (Cloud) backend
                       keep their files; file:// backends write the real layout at their path
  FAKE_PULUMI_CONTROL  optional JSON file of scripted behaviour (read, and updated, per call):
      "locked": N            another process holds the stack's lock (a real lock file) for the
                             next N lock attempts (-1: until `pulumi cancel` or the knob is
                             cleared); previews do not lock
      "fail": {"up": reason} the provider fails the step of the first changing custom resource
                             to reach the engine (the program's registration order, which may
                             vary, as with the real engine); {"up": {"URN-substring": reason}}
                             fails the matching resource. Keys: up, preview, refresh, destroy
      "unready": {"up": {"URN-substring": {"reason": text, "status": {...}, "metadata": {...}}}}
                             the provider makes the matching resource (outputs: its inputs with
                             `status`, and `metadata` merged, as the API server adds
                             `generation`) but its await fails with `reason`: the state keeps it
                             with initErrors and the update fails, as pulumi-kubernetes' time-outs
      "program_error": msg   the monitor rejects the program's first custom resource with `msg`:
                             the SDK raises it inside the program ("python inline source
                             runtime error")
      "pending": true        the state holds a pending operation, as an update killed mid-step
                             leaves it (consumed by the next operation)
      "drift": N             refresh reads the first N custom resources back changed
      "sleep": seconds       the first changing custom step of an `up` takes this long, holding
                             the lock (Ctrl-C cancels like the real CLI)
      "leak": true           failure texts include the passphrase (to test scrubbing)
      "broken_version": true `pulumi version` fails
      "plugin_install_fails": reason
  FAKE_PULUMI_VERSION  what `pulumi version` prints (default: the installed SDK's version). Above
                       3.205.0 the automation code streams engine events over gRPC
                       (`--event-log tcp://...`); at or below it, it tails a file. Both work here.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from standin.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
