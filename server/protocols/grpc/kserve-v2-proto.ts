/**
 * The built-in `kserve-v2` descriptors as text, so the compiled gateway carries them (the build copies no .proto
 * files). Identical to kserve-v2.proto beside it, which users hand to protoc, grpcurl or their own clients;
 * a unit test keeps the two the same.
 */
export const KSERVE_V2_PROTO = `// The Open Inference Protocol (KServe v2) over gRPC, with Triton's streaming extension: the "kserve-v2"
// descriptors of a "grpc" connection. Field numbers are the interface servers and clients agree on; they
// follow the published grpc_predict_v2.proto and Triton's grpc_service.proto, so never renumber them.

syntax = "proto3";

package inference;

service GRPCInferenceService {
  // Whether the server can receive and answer requests at all.
  rpc ServerLive(ServerLiveRequest) returns (ServerLiveResponse) {}

  // Whether the server is ready to run inference.
  rpc ServerReady(ServerReadyRequest) returns (ServerReadyResponse) {}

  // Whether one model is ready to run inference.
  rpc ModelReady(ModelReadyRequest) returns (ModelReadyResponse) {}

  // The server's name, version and extensions.
  rpc ServerMetadata(ServerMetadataRequest) returns (ServerMetadataResponse) {}

  // One model's versions, platform, inputs and outputs.
  rpc ModelMetadata(ModelMetadataRequest) returns (ModelMetadataResponse) {}

  // One inference request, one answer.
  rpc ModelInfer(ModelInferRequest) returns (ModelInferResponse) {}

  // Triton's streaming inference: requests and answers on one bidirectional stream (token streams of LLMs).
  rpc ModelStreamInfer(stream ModelInferRequest) returns (stream ModelStreamInferResponse) {}
}

message ServerLiveRequest {}

message ServerLiveResponse {
  bool live = 1;
}

message ServerReadyRequest {}

message ServerReadyResponse {
  bool ready = 1;
}

message ModelReadyRequest {
  string name = 1;
  string version = 2;
}

message ModelReadyResponse {
  bool ready = 1;
}

message ServerMetadataRequest {}

message ServerMetadataResponse {
  string name = 1;
  string version = 2;
  repeated string extensions = 3;
}

message ModelMetadataRequest {
  string name = 1;
  string version = 2;
}

message ModelMetadataResponse {
  message TensorMetadata {
    string name = 1;
    string datatype = 2;
    // -1 marks a dimension of variable size.
    repeated int64 shape = 3;
  }

  string name = 1;
  repeated string versions = 2;
  string platform = 3;
  repeated TensorMetadata inputs = 4;
  repeated TensorMetadata outputs = 5;
}

message ModelInferRequest {
  message InferInputTensor {
    string name = 1;
    string datatype = 2;
    repeated int64 shape = 3;
    map<string, InferParameter> parameters = 4;
    // Absent when the tensor travels in raw_input_contents.
    InferTensorContents contents = 5;
  }

  message InferRequestedOutputTensor {
    string name = 1;
    map<string, InferParameter> parameters = 2;
  }

  string model_name = 1;
  string model_version = 2;
  string id = 3;
  map<string, InferParameter> parameters = 4;
  repeated InferInputTensor inputs = 5;
  repeated InferRequestedOutputTensor outputs = 6;
  // One entry per input, in the order of inputs: flattened row-major elements. BYTES elements are each a
  // 4-byte little-endian length followed by that many bytes.
  repeated bytes raw_input_contents = 7;
}

message ModelInferResponse {
  message InferOutputTensor {
    string name = 1;
    string datatype = 2;
    repeated int64 shape = 3;
    map<string, InferParameter> parameters = 4;
    // Absent when the tensor travels in raw_output_contents.
    InferTensorContents contents = 5;
  }

  string model_name = 1;
  string model_version = 2;
  string id = 3;
  map<string, InferParameter> parameters = 4;
  repeated InferOutputTensor outputs = 5;
  // One entry per output, in the order of outputs, laid out like raw_input_contents.
  repeated bytes raw_output_contents = 6;
}

message ModelStreamInferResponse {
  // Empty when the request succeeded.
  string error_message = 1;
  ModelInferResponse infer_response = 2;
}

message InferParameter {
  oneof parameter_choice {
    bool bool_param = 1;
    int64 int64_param = 2;
    string string_param = 3;
    // Triton's additions.
    double double_param = 4;
    uint64 uint64_param = 5;
  }
}

// Tensor elements by data type; repeated fields cannot sit in a oneof, so each type has its own field.
message InferTensorContents {
  repeated bool bool_contents = 1;
  // INT8, INT16 and INT32.
  repeated int32 int_contents = 2;
  repeated int64 int64_contents = 3;
  // UINT8, UINT16 and UINT32.
  repeated uint32 uint_contents = 4;
  repeated uint64 uint64_contents = 5;
  repeated float fp32_contents = 6;
  repeated double fp64_contents = 7;
  repeated bytes bytes_contents = 8;
}
`;
