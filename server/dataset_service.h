#ifndef INVNET_SERVER_DATASET_SERVICE_H_
#define INVNET_SERVER_DATASET_SERVICE_H_

// invnet.v1.DatasetService: UploadDataset (client streaming), ListDatasets, DeleteDataset.
// Like every RPC adapter, each method decodes and validates its request, calls the gRPC-free
// core and encodes the response; statuses cross into gRPC in one place (status_util.h), and
// deadlines and cancellation reach the core as a plain stop predicate. Every handler first
// checks the caller's token with `auth` (auth.h; not null, owned by the caller, outliving the
// service).

#include "invnet/v1/dataset_service.grpc.pb.h"
#include "server/auth.h"
#include "server/dataset_store.h"
#include "server/service_limits.h"

namespace invnet::server {

class DatasetServiceImpl final : public v1::DatasetService::Service {
 public:
  DatasetServiceImpl(DatasetStore* datasets, ServiceLimits limits, const Authorizer* auth)
      : datasets_(datasets), limits_(limits), auth_(auth) {}
  grpc::Status UploadDataset(grpc::ServerContext* context,
                             grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                             v1::UploadDatasetResponse* response) override;
  grpc::Status ListDatasets(grpc::ServerContext* context, const v1::ListDatasetsRequest* request,
                            v1::ListDatasetsResponse* response) override;
  grpc::Status DeleteDataset(grpc::ServerContext* context,
                             const v1::DeleteDatasetRequest* request,
                             v1::DeleteDatasetResponse* response) override;

 private:
  DatasetStore* datasets_;
  const ServiceLimits limits_;
  const Authorizer* auth_;
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_DATASET_SERVICE_H_
