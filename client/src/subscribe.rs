//! A Subscribe stream that survives node failures: on a broken stream it
//! reconnects (to whichever member answers) and resumes after the last
//! message it yielded, so the consumer sees no gap and no duplicate.

use chat_proto::chat::chat_service_client::ChatServiceClient;
use chat_proto::chat::{Message, SubscribeRequest};
use futures::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::retry::{Backoff, Idempotence, should_retry};

impl Client {
    /// Messages sent to the caller with ids above `after_id`, live, until dropped.
    /// Yields an error and ends only when the cluster refuses the subscription
    /// (e.g. the session ended); unavailability is retried forever.
    ///
    /// # Errors
    /// `NotLoggedIn` without a session.
    pub fn subscribe(&self, after_id: u64) -> Result<impl Stream<Item = Result<Message>> + Send + 'static> {
        self.token().ok_or(Error::NotLoggedIn)?;
        let client = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let mut last = after_id;
            let mut backoff = Backoff::default();
            let mut attempt = 0usize;
            loop {
                let opened = client.open(last, attempt).await;
                attempt += 1;
                match opened {
                    Ok(mut stream) => {
                        backoff = Backoff::default();
                        loop {
                            tokio::select! {
                                item = stream.next() => match item {
                                    Some(Ok(m)) if m.id > last => {
                                        last = m.id;
                                        if tx.send(Ok(m)).await.is_err() {
                                            return;
                                        }
                                    }
                                    Some(Ok(_)) => {}
                                    Some(Err(status)) if !should_retry(&status, Idempotence::Safe) => {
                                        let _ = tx.send(Err(Error::Rejected(status))).await;
                                        return;
                                    }
                                    // Broken or ended stream: reconnect below.
                                    _ => break,
                                },
                                _ = tx.closed() => return,
                            }
                        }
                    }
                    Err(Error::Rejected(status)) if !should_retry(&status, Idempotence::Safe) => {
                        let _ = tx.send(Err(Error::Rejected(status))).await;
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "subscribe: reconnecting"),
                }
                client.discovery().forget_leader();
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    async fn open(&self, after_id: u64, attempt: usize) -> Result<tonic::Streaming<Message>> {
        let candidates = self.discovery().candidates();
        let addr = match self.discovery().leader().await {
            Ok(leader) => leader,
            // Any member serves Subscribe from its applied state.
            Err(_) => candidates[attempt % candidates.len()].clone(),
        };
        let mut client = ChatServiceClient::new(self.discovery().channel(&addr)?);
        // From state this client has seen, at least (its writes included).
        let mut request = tonic::Request::new(SubscribeRequest { after_id, min_index: self.seen_index() });
        request.metadata_mut().insert(chat_proto::AUTHORIZATION, self.auth_value()?);
        client.subscribe(request).await.map(|r| r.into_inner()).map_err(|s| {
            if should_retry(&s, Idempotence::Safe) {
                Error::Unavailable(s.message().to_string())
            } else {
                Error::Rejected(s)
            }
        })
    }
}
