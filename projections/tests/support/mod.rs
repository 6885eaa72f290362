//! What the projections' tests share beyond `stemma-testkit` (re-exported here): waiting
//! for the read models and reading their stored form.
#![allow(dead_code)]

use std::time::Duration;

pub use stemma_testkit::*;

/// Waits (bounded) until every read model has applied the store's head.
pub async fn caught_up(models: &projections::ReadModels, head: u64) {
    let wait = Duration::from_secs(30);
    models.family_tree.query(head, wait, |_| ()).await.unwrap();
    models.allocations.query(head, wait, |_| ()).await.unwrap();
    models.credits.query(head, wait, |_| ()).await.unwrap();
    models.statements.query(head, wait, |_| ()).await.unwrap();
}

/// Each model's stored form, as served now.
pub fn encoded(models: &projections::ReadModels) -> Vec<Vec<u8>> {
    use projections::Projection;
    vec![
        models.family_tree.query_now(|m| m.encode()).value,
        models.allocations.query_now(|m| m.encode()).value,
        models.credits.query_now(|m| m.encode()).value,
        models.statements.query_now(|m| m.encode()).value,
    ]
}
