//! Stemma's protobuf API and the generated tonic clients and servers. Nothing else lives
//! here: `services` converts between these types and the domain's.

pub mod v1 {
    #![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]
    tonic::include_proto!("stemma.v1");

    /// The encoded descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("stemma_descriptor");
}
