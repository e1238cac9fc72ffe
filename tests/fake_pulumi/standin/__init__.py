"""The stand-in Pulumi CLI, as a package: argv, workspace and secrets, DIY/Cloud state, the
deployment engine (steps, diff, targets), the gRPC servers the inline program talks to, engine
events and the providers' replace rules. `tests/fake_pulumi/fake_pulumi.py` is its entry point.

Every behaviour names the pulumi/pulumi (or provider) source file it follows in a comment beside
the code. It knows nothing about mlserve: it runs whatever inline program the caller serves.
"""
