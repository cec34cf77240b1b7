//! Amazon SQS adapter of the work queue.

use async_trait::async_trait;

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
