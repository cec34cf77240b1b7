//! Amazon SQS adapter of the work queue.

use async_trait::async_trait;

use crate::deadletter::{DeadLetterError, DeadLetterQueue, DeadLetters, DeadMessage};
use crate::queue::{QueueError, WorkMessage, WorkQueue};

/// SQS: `SendMessageBatch`, ten messages a call.
pub struct SqsQueue {
    client: super::lazy::LazyClient<aws_sdk_sqs::Client>,
    url: String,
}

impl SqsQueue {
    pub fn new(
        client: impl Into<super::lazy::LazyClient<aws_sdk_sqs::Client>>,
        url: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            url: url.into(),
        }
    }
}

#[async_trait]
impl WorkQueue for SqsQueue {
    async fn enqueue(&self, messages: &[WorkMessage]) -> Result<(), QueueError> {
        for chunk in messages.chunks(10) {
            let mut req = self
                .client
                .get()
                .await
                .send_message_batch()
                .queue_url(&self.url);
            for (i, m) in chunk.iter().enumerate() {
                let body = serde_json::to_string(m).map_err(|e| QueueError(e.to_string()))?;
                let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| QueueError(e.to_string()))?;
                req = req.entries(entry);
            }
            let out = req.send().await.map_err(|e| {
                QueueError(format!(
                    "SendMessageBatch: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ))
            })?;
            if !out.failed().is_empty() {
                return Err(QueueError(format!(
                    "SendMessageBatch refused {} of {} messages",
                    out.failed().len(),
                    chunk.len()
                )));
            }
        }
        Ok(())
    }
}

/// The two dead-letter queues in SQS: `GetQueueAttributes` for the depth, `ReceiveMessage` and
/// `DeleteMessageBatch` to look and to redrive.
pub struct SqsDeadLetters {
    client: super::lazy::LazyClient<aws_sdk_sqs::Client>,
    charge_url: String,
    schedule_url: String,
}

impl SqsDeadLetters {
    pub fn new(
        client: impl Into<super::lazy::LazyClient<aws_sdk_sqs::Client>>,
        charge_url: impl Into<String>,
        schedule_url: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            charge_url: charge_url.into(),
            schedule_url: schedule_url.into(),
        }
    }

    fn url(&self, queue: DeadLetterQueue) -> &str {
        match queue {
            DeadLetterQueue::Charge => &self.charge_url,
            DeadLetterQueue::Schedule => &self.schedule_url,
        }
    }
}

fn sqs_error<E: std::error::Error + 'static>(operation: &str, e: E) -> DeadLetterError {
    DeadLetterError(format!(
        "{operation}: {}",
        aws_sdk_sqs::error::DisplayErrorContext(e)
    ))
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    /// The messages waiting and those received but not yet deleted (hidden by a listing or a
    /// redrive still under way, or kept by one): both are still in the queue.
    async fn depth(&self, queue: DeadLetterQueue) -> Result<u64, DeadLetterError> {
        use aws_sdk_sqs::types::QueueAttributeName as Name;
        let out = self
            .client
            .get()
            .await
            .get_queue_attributes()
            .queue_url(self.url(queue))
            .attribute_names(Name::ApproximateNumberOfMessages)
            .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sqs_error("GetQueueAttributes", e))?;
        let count = |name: Name| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| DeadLetterError(format!("GetQueueAttributes: no {}", name.as_str())))
        };
        Ok(count(Name::ApproximateNumberOfMessages)?
            + count(Name::ApproximateNumberOfMessagesNotVisible)?)
    }

    async fn receive(
        &self,
        queue: DeadLetterQueue,
        max: usize,
        hide: std::time::Duration,
    ) -> Result<Vec<DeadMessage>, DeadLetterError> {
        use aws_sdk_sqs::types::MessageSystemAttributeName as System;
        let out = self
            .client
            .get()
            .await
            .receive_message()
            .queue_url(self.url(queue))
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(hide.as_secs().min(43_200) as i32)
            .wait_time_seconds(0)
            .message_system_attribute_names(System::SentTimestamp)
            .message_system_attribute_names(System::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| {
                let system = |name: System| m.attributes().and_then(|a| a.get(&name));
                DeadMessage {
                    id: m.message_id().unwrap_or_default().to_owned(),
                    receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    sent_at: system(System::SentTimestamp)
                        .and_then(|t| t.parse::<i64>().ok())
                        .and_then(chrono::DateTime::from_timestamp_millis),
                    receive_count: system(System::ApproximateReceiveCount)
                        .and_then(|n| n.parse().ok()),
                    attributes: m
                        .message_attributes()
                        .into_iter()
                        .flatten()
                        .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                        .collect(),
                }
            })
            .collect())
    }

    async fn delete(
        &self,
        queue: DeadLetterQueue,
        receipts: &[String],
    ) -> Result<(), DeadLetterError> {
        for chunk in receipts.chunks(10) {
            let mut req = self
                .client
                .get()
                .await
                .delete_message_batch()
                .queue_url(self.url(queue));
            for (i, receipt) in chunk.iter().enumerate() {
                let entry = aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .map_err(|e| DeadLetterError(e.to_string()))?;
                req = req.entries(entry);
            }
            let out = req
                .send()
                .await
                .map_err(|e| sqs_error("DeleteMessageBatch", e))?;
            if !out.failed().is_empty() {
                return Err(DeadLetterError(format!(
                    "DeleteMessageBatch refused {} of {} messages",
                    out.failed().len(),
                    chunk.len()
                )));
            }
        }
        Ok(())
    }
}
