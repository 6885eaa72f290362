//! Delivering a durable commit's answers: all at once, from a task on the runtime the
//! store was opened on.
//!
//! Every answer wakes the task of the appender waiting for it. Woken from the writer's
//! threads, which are not the runtime's, each wake goes through the runtime's shared
//! queue (a lock) and, whenever no worker is looking for work, unparks one (a futex call
//! and a context switch): with hundreds of appenders, most of the publishing thread's
//! answering time and a good part of the workers' time went there. Handed to one task as
//! a batch, the commit's answers cost the writer one wake; the task's sends wake the
//! appenders into its worker's own queue, from which the other workers take their share.
//!
//! The batch is made after the commit's `fdatasync` returned and it was indexed and
//! `HEAD` written, as before: only the thread that sends the answers moved. Without a
//! runtime (its task gone once it shut down) the answers are sent where they are.

use tokio::sync::{mpsc, oneshot};

use super::writer::{Accepted, AppendReply};
use crate::store::error::StoreError;
use crate::store::types::AppendResult;

/// Batches queued for the answering task. One commit is published at a time, so a few
/// suffice; a full queue holds the publishing thread back (a slow runtime slows commits).
const ANSWER_QUEUE_DEPTH: usize = 4;

/// A durable commit's answers.
pub struct Answers {
    pub accepted: Vec<Accepted>,
    /// Appends answered without writing (refused, or replayed from the durable index).
    pub answers: Vec<(AppendReply, Result<AppendResult, StoreError>)>,
}

impl Answers {
    /// Sends every answer; frees the requests.
    fn send(self) {
        for accepted in self.accepted {
            for retry in accepted.retries {
                let _ = retry.send(Ok(accepted.result.clone()));
            }
            let _ = accepted.reply.send(Ok(accepted.result));
        }
        for (reply, outcome) in self.answers {
            let _ = reply.send(outcome);
        }
    }
}

enum Message {
    Answers(Answers),
    /// Every batch before this one is sent: tell the store's `close`.
    Closed(oneshot::Sender<()>),
}

/// Where the writer's threads hand the answers.
pub struct Answerer {
    queue: Option<mpsc::Sender<Message>>,
}

impl Answerer {
    /// Starts the answering task on the current runtime, if there is one.
    pub fn start() -> Answerer {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Answerer { queue: None };
        };
        let (queue, mut batches) = mpsc::channel(ANSWER_QUEUE_DEPTH);
        runtime.spawn(async move {
            while let Some(message) = batches.recv().await {
                match message {
                    Message::Answers(answers) => answers.send(),
                    Message::Closed(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Answerer { queue: Some(queue) }
    }

    /// Sends `answers` (from a thread outside the runtime: it may block while the queue
    /// is full).
    pub fn answer(&self, answers: Answers) {
        match self.hand(Message::Answers(answers)) {
            Some(Message::Answers(answers)) => answers.send(),
            Some(Message::Closed(_)) => unreachable!("handed back what was handed"),
            None => {}
        }
    }

    /// Confirms `close` once every answer handed before is sent.
    pub fn closed(&self, done: oneshot::Sender<()>) {
        if let Some(Message::Closed(done)) = self.hand(Message::Closed(done)) {
            let _ = done.send(());
        }
    }

    /// Queues `message` for the task; hands it back if there is no task (any more).
    fn hand(&self, message: Message) -> Option<Message> {
        match &self.queue {
            Some(queue) => queue.blocking_send(message).err().map(|e| e.0),
            None => Some(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal per append: the simplest answers to make.
    fn answers(
        count: usize,
    ) -> (
        Answers,
        Vec<oneshot::Receiver<Result<AppendResult, StoreError>>>,
    ) {
        let mut batch = Answers {
            accepted: Vec::new(),
            answers: Vec::new(),
        };
        let mut receivers = Vec::new();
        for _ in 0..count {
            let (reply, receiver) = oneshot::channel();
            batch.answers.push((reply, Err(StoreError::Closed)));
            receivers.push(receiver);
        }
        (batch, receivers)
    }

    /// `close` is confirmed only by the answering task, after every batch handed before it:
    /// while that task cannot run (its runtime is not driven), the confirmation does not
    /// come, and once it comes, every earlier answer is there.
    #[test]
    fn close_is_confirmed_after_the_answers_handed_before_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let answerer = runtime.block_on(async { Answerer::start() });
        let (first, mut first_receivers) = answers(3);
        let (second, mut second_receivers) = answers(2);
        // From this thread, outside the runtime, as the writer's threads hand them.
        answerer.answer(first);
        answerer.answer(second);
        let (done, mut confirmed) = oneshot::channel();
        answerer.closed(done);
        // The runtime has not run since: nothing may be answered or confirmed yet.
        assert!(
            confirmed.try_recv().is_err(),
            "confirmed before the answers went out"
        );
        for receiver in first_receivers.iter_mut().chain(&mut second_receivers) {
            assert!(receiver.try_recv().is_err(), "answered without the runtime");
        }
        runtime.block_on(async { confirmed.await.unwrap() });
        for receiver in first_receivers.iter_mut().chain(&mut second_receivers) {
            assert!(matches!(receiver.try_recv(), Ok(Err(StoreError::Closed))));
        }
    }

    /// Without a runtime, answers and the confirmation are sent at once, in order.
    #[test]
    fn without_a_runtime_answers_are_sent_where_they_are() {
        let answerer = Answerer::start();
        let (batch, mut receivers) = answers(2);
        answerer.answer(batch);
        for receiver in &mut receivers {
            assert!(matches!(receiver.try_recv(), Ok(Err(StoreError::Closed))));
        }
        let (done, mut confirmed) = oneshot::channel();
        answerer.closed(done);
        assert!(confirmed.try_recv().is_ok());
    }
}
