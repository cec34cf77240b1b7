//! The dead-letter queues in memory: the dev stack (where a message the charger fails on waits
//! here) and tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{DeadLetterError, DeadLetterQueue, DeadLetters, DeadMessage};

struct Stored {
    message: DeadMessage,
    hidden_until: Option<Instant>,
}

#[derive(Default)]
pub struct MemoryDeadLetters {
    queues: Mutex<HashMap<DeadLetterQueue, Vec<Stored>>>,
    next: Mutex<u64>,
}

impl MemoryDeadLetters {
    /// Puts a message on `queue`, as the charge queue's redrive policy or Scheduler would.
    pub fn push(
        &self,
        queue: DeadLetterQueue,
        body: impl Into<String>,
        sent_at: DateTime<Utc>,
        attributes: BTreeMap<String, String>,
    ) -> String {
        let id = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            format!("dead-{next:06}")
        };
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(queue)
            .or_default()
            .push(Stored {
                message: DeadMessage {
                    id: id.clone(),
                    receipt: String::new(),
                    body: body.into(),
                    sent_at: Some(sent_at),
                    receive_count: Some(0),
                    attributes,
                },
                hidden_until: None,
            });
        id
    }

    /// Every message's body, hidden or not.
    pub fn bodies(&self, queue: DeadLetterQueue) -> Vec<String> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&queue)
            .map(|q| q.iter().map(|s| s.message.body.clone()).collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl DeadLetters for MemoryDeadLetters {
    async fn depth(&self, queue: DeadLetterQueue) -> Result<u64, DeadLetterError> {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        Ok(queues.get(&queue).map_or(0, |q| q.len() as u64))
    }

    async fn receive(
        &self,
        queue: DeadLetterQueue,
        max: usize,
        hide: StdDuration,
    ) -> Result<Vec<DeadMessage>, DeadLetterError> {
        let now = Instant::now();
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for stored in queues.entry(queue).or_default().iter_mut() {
            if out.len() >= max.min(10) {
                break;
            }
            if stored.hidden_until.is_some_and(|t| t > now) {
                continue;
            }
            *next += 1;
            stored.message.receipt = format!("{}#{next}", stored.message.id);
            stored.message.receive_count = stored.message.receive_count.map(|c| c + 1);
            if !hide.is_zero() {
                stored.hidden_until = Some(now + hide);
            }
            out.push(stored.message.clone());
        }
        Ok(out)
    }

    async fn delete(
        &self,
        queue: DeadLetterQueue,
        receipts: &[String],
    ) -> Result<(), DeadLetterError> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        // As in SQS, only the latest receipt of a message deletes it.
        queues
            .entry(queue)
            .or_default()
            .retain(|s| !receipts.contains(&s.message.receipt));
        Ok(())
    }
}
