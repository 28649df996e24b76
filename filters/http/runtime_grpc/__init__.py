"""`runtime_grpc`: Dapr's gRPC API (and mecha's own service) on mecha's HTTP/2 stack."""
