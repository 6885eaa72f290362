//! TLS with rustls and client certificates (mTLS), on a real socket.

use std::path::Path;

use proto::v1 as pb;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use services::demo::{read_tokens, token_files_in, Bearer};
use services::server::{bind, ServeOptions};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

struct Pki {
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

/// A CA, a server certificate for localhost and a client certificate, written as PEM.
fn write_pki(directory: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["finance-service".to_string()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

    std::fs::write(directory.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(directory.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(directory.join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let data = tempfile::tempdir().unwrap();
    let pki = write_pki(data.path());
    let first =
        services::config::write_first_start(data.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let mut config = std::fs::read_to_string(&first.config_path).unwrap();
    config
        .push_str("\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"ca.pem\"\n");
    std::fs::write(&first.config_path, config).unwrap();
    let options = ServeOptions {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        metrics: false,
        ..ServeOptions::new(data.path())
    };
    let bound = bind(&options).await.unwrap();
    let port = bound.address.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.run(async {
        let _ = stopped.await;
    }));
    let tokens = read_tokens(&token_files_in(&data.path().join("tokens")).unwrap()).unwrap();
    let gateway = Bearer::new(&tokens[&services::auth::Role::Gateway]).unwrap();
    let endpoint = Endpoint::from_shared(format!("https://localhost:{port}")).unwrap();
    let trust = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");

    // With a client certificate: served.
    let channel = endpoint
        .clone()
        .tls_config(trust.clone().identity(Identity::from_pem(
            &pki.client_cert_pem,
            &pki.client_key_pem,
        )))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut members =
        pb::members_client::MembersClient::new(InterceptedService::new(channel, gateway.clone()));
    let result = members
        .register_member(pb::RegisterMemberRequest {
            meta: Some(pb::CommandMeta {
                command_id: "tls-1".into(),
                ..Default::default()
            }),
            member_id: "alice".into(),
            handle: "@alice".into(),
            legal_name: "Alice".into(),
            email: "alice@example.org".into(),
            payout_address: "acct".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(result.position, 1);

    // Without one: the handshake is refused, nothing is served.
    let refused = match endpoint.clone().tls_config(trust).unwrap().connect().await {
        Err(_) => true,
        Ok(channel) => {
            let mut members = pb::members_client::MembersClient::new(InterceptedService::new(
                channel,
                gateway.clone(),
            ));
            members
                .erase_personal_data(pb::ErasePersonalDataRequest {
                    meta: Some(pb::CommandMeta {
                        command_id: "tls-2".into(),
                        ..Default::default()
                    }),
                    member_id: "alice".into(),
                })
                .await
                .is_err()
        }
    };
    assert!(refused, "a client without a certificate was served");

    // Plaintext to a TLS port is refused too.
    let plaintext = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        assert!(health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new()
            })
            .await
            .is_err());
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
