use ledger::store::{EmbeddedOptions, EmbeddedStore, EventStore, ExpectedVersion};
use stemma_tests::{append, event, stream};

#[tokio::test]
async fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        segment_size_bytes: 8192,
        ..EmbeddedOptions::default()
    };
    let (store, report) = EmbeddedStore::open(dir.path(), options.clone())
        .await
        .unwrap();
    assert_eq!(report.head.position, 0);
    for i in 0..100 {
        let result = store
            .append(append(
                &format!("c{i}"),
                &[("s-1", ExpectedVersion::Exact(i))],
                vec![event("s-1", &[i as u8; 100])],
            ))
            .await
            .unwrap();
        assert_eq!(result.first_position, i + 1);
    }
    let all = store.read_all(1, 1000).await.unwrap();
    assert_eq!(all.len(), 100);
    store.close().await;
    drop(store);
    let (store, report) = EmbeddedStore::open(dir.path(), options).await.unwrap();
    println!("{report:?}");
    assert_eq!(report.head.position, 100);
    assert_eq!(
        store
            .read_stream(&stream("s-1"), 50, 10)
            .await
            .unwrap()
            .len(),
        10
    );
}
