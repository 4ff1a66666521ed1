#!/usr/bin/env python3
"""Interoperability: a Python client generated from invnet's protos talks to the real server.

Generates the stubs with protoc and grpc_python_plugin, starts invnet-server on port 0 with a
temporary repository, checks health, trains a tiny model (streaming its progress), reconstructs,
sends a malformed request, and stops the server with SIGTERM. Exits non-zero on any failure.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--protos", required=True)
    parser.add_argument("--protoc", required=True)
    parser.add_argument("--plugin", required=True)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="invnet_python_")
    server = None
    try:
        stubs = os.path.join(work, "stubs")
        os.makedirs(stubs)
        protos = [os.path.join("invnet", "v1", f)
                  for f in sorted(os.listdir(os.path.join(args.protos, "invnet", "v1")))]
        # The standard health protocol lives in proto package grpc.health.v1, whose generated
        # module path (grpc/health/...) would collide with the grpcio package itself; compiled
        # from another directory its module is health_check.health_pb2, on the same wire.
        health_src = os.path.join(work, "health_src")
        os.makedirs(os.path.join(health_src, "health_check"))
        shutil.copy(os.path.join(args.protos, "grpc", "health", "v1", "health.proto"),
                    os.path.join(health_src, "health_check", "health.proto"))
        plugin = ["--python_out=" + stubs, "--grpc_out=" + stubs,
                  "--plugin=protoc-gen-grpc=" + args.plugin]
        subprocess.run([args.protoc, "-I" + args.protos] + plugin + protos, check=True)
        subprocess.run([args.protoc, "-I" + health_src] + plugin
                       + [os.path.join("health_check", "health.proto")], check=True)
        sys.path.insert(0, stubs)
        import grpc
        from health_check import health_pb2, health_pb2_grpc
        from invnet.v1 import reconstruction_service_pb2 as rs
        from invnet.v1 import reconstruction_service_pb2_grpc as rs_grpc
        from invnet.v1 import training_service_pb2 as ts
        from invnet.v1 import training_service_pb2_grpc as ts_grpc
        from invnet.v1 import model_pb2

        server = subprocess.Popen(
            [args.server, "--address=127.0.0.1:0", "--repository=" + os.path.join(work, "repo"),
             "--torch_threads=1"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(work, "server.log"), "w"), text=True)
        line = server.stdout.readline()
        assert "listening on" in line, "server did not start: %r" % line
        target = line.strip().split()[-1]
        channel = grpc.insecure_channel(target)

        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING, status
        print("health: SERVING")

        training = ts_grpc.TrainingServiceStub(channel)
        request = ts.TrainRequest(model_name="py", preset="bimodal2d")
        request.training.loss = model_pb2.LOSS_DIVERGENCE
        request.training.steps = 60
        request.training.batch_size = 64
        request.training.validation_size = 100
        request.architecture.num_blocks = 2
        request.architecture.hidden_width = 16
        job = training.Train(request, timeout=30).job
        last = None
        for update in training.WatchTrainingJob(ts.WatchTrainingJobRequest(job_id=job.job_id),
                                                timeout=300):
            last = update.job
        assert last.state == ts.JOB_STATE_SUCCEEDED, last
        print("trained: version", last.published_version)

        reconstruction = rs_grpc.ReconstructionServiceStub(channel)
        y = rs.ReconstructRequest(model="py")
        y.measurements.shape.extend([3, 2])
        y.measurements.values.extend([0.9, 0.1, -0.9, -0.1, 0.2, 0.3])
        answer = reconstruction.Reconstruct(y, timeout=30)
        assert list(answer.reconstructions.shape) == [3, 2], answer
        assert all(answer.converged), answer
        print("reconstruct:", list(answer.reconstructions.values))

        bad = rs.ReconstructRequest(model="py")
        bad.measurements.shape.extend([2, 2])
        bad.measurements.values.extend([1.0, 2.0, 3.0])
        try:
            reconstruction.Reconstruct(bad, timeout=30)
            raise AssertionError("a malformed tensor was accepted")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
            assert "measurements" in error.details(), error.details()
            print("bad request:", error.code(), error.details())

        channel.close()
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        assert code == 0, "server exited with %d" % code
        server = None
        print("PASS")
        return 0
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
