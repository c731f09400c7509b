//! Generates the two gRPC services of Nacos's `nacos_grpc_service.proto` (wire reference §4.1)
//! with tonic's manual builder: no `protoc` is needed, and the services have no proto package,
//! so their paths are `/Request/request` and `/BiRequestStream/requestBiStream` exactly. The
//! client stubs serve the tests and the load generator.

fn main() {
    let method = |name: &str, route: &str, client_streaming: bool, server_streaming: bool| {
        let mut m = tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type("crate::grpc::proto::Payload")
            .output_type("crate::grpc::proto::Payload")
            .codec_path("tonic::codec::ProstCodec");
        if client_streaming {
            m = m.client_streaming();
        }
        if server_streaming {
            m = m.server_streaming();
        }
        m.build()
    };
    let request = tonic_build::manual::Service::builder()
        .name("Request")
        .package("")
        .method(method("request", "request", false, false))
        .build();
    let bi = tonic_build::manual::Service::builder()
        .name("BiRequestStream")
        .package("")
        .method(method("request_bi_stream", "requestBiStream", true, true))
        .build();
    tonic_build::manual::Builder::new()
        .build_client(true)
        .compile(&[request, bi]);
}
