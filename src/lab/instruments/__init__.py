"""Instruments over SiLA 2: the features (FDL), the emulators served as SiLA servers, and the
station backend that drives a SiLA server (docs/instruments.md)."""

import os

# gRPC's C core logs at INFO to stderr (a GOAWAY line per closed connection); before its first use
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
