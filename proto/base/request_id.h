#ifndef INVNET_BASE_REQUEST_ID_H_
#define INVNET_BASE_REQUEST_ID_H_

// The request id that ties a client's error to the server's log line.

namespace invnet {

// The metadata key: a client may send it; the server answers every call with it in the
// initial metadata (the client's id, or a fresh one).
inline constexpr char kRequestIdMetadata[] = "x-request-id";

// The absl::Status payload under which the client keeps the id the server answered with.
// Annotate (status.h) keeps it when context is added.
inline constexpr char kRequestIdPayload[] = "invnet/request-id";

}  // namespace invnet

#endif  // INVNET_BASE_REQUEST_ID_H_
