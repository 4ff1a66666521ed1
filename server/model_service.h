#ifndef INVNET_SERVER_MODEL_SERVICE_H_
#define INVNET_SERVER_MODEL_SERVICE_H_

// invnet.v1.ModelService: ListModels, GetModel, DeleteModel.
// Like every RPC adapter, each method decodes and validates its request, calls the gRPC-free
// core and encodes the response; statuses cross into gRPC in one place (status_util.h), and
// deadlines and cancellation reach the core as a plain stop predicate. Every handler first
// checks the caller's token with `auth` (auth.h; not null, owned by the caller, outliving the
// service).

#include "invnet/v1/model_service.grpc.pb.h"
#include "server/auth.h"
#include "server/hosted_model.h"
#include "server/model_repository.h"

namespace invnet::server {

class ModelServiceImpl final : public v1::ModelService::Service {
 public:
  ModelServiceImpl(ModelRepository* models, const Authorizer* auth)
      : models_(models), auth_(auth) {}
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status GetModel(grpc::ServerContext* context, const v1::GetModelRequest* request,
                        v1::GetModelResponse* response) override;
  grpc::Status DeleteModel(grpc::ServerContext* context, const v1::DeleteModelRequest* request,
                           v1::DeleteModelResponse* response) override;

 private:
  ModelRepository* models_;
  const Authorizer* auth_;
};


// The description of a hosted model version that GetModel and ListModels return.
void EncodeModelVersion(const HostedModel& model, v1::ModelVersion* proto);

}  // namespace invnet::server

#endif  // INVNET_SERVER_MODEL_SERVICE_H_
