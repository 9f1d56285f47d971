//! AppendEntries over one long-lived gRPC stream per replication stream.
//!
//! Every write and every heartbeat is an AppendEntries, so its per-message
//! cost matters: as a unary call each one opened an HTTP/2 stream (headers
//! and trailers encoded and decoded, a server task spawned, a hop through the
//! channel's buffer task). On a stream it is one DATA frame each way.
//!
//! Requests and replies pair up by order alone. That holds because openraft
//! sends a follower one AppendEntries at a time (`&mut self`). A call abandoned
//! half-way — timed out, or its future dropped — would leave its reply for the
//! next call to misread; so such a stream is thrown away and the next call
//! opens a new one.

use chat_proto::raft::Payload;
use chat_proto::raft::raft_service_client::RaftServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

/// An open AppendEntries stream to one follower.
pub struct AppendStream {
    requests: mpsc::Sender<Payload>,
    replies: Streaming<Payload>,
    /// Set from sending a request until its reply is read: still set at the
    /// start of a call means the previous call was abandoned mid-way.
    awaiting_reply: bool,
}

impl AppendStream {
    /// Opens a stream (one round trip: the follower's response headers).
    async fn open(client: &mut RaftServiceClient<Channel>) -> Result<Self, Status> {
        let (requests, outgoing) = mpsc::channel(1);
        let replies = client.append_entries(ReceiverStream::new(outgoing)).await?.into_inner();
        Ok(Self { requests, replies, awaiting_reply: false })
    }

    async fn call(&mut self, request: Payload) -> Result<Payload, Status> {
        self.awaiting_reply = true;
        self.requests.send(request).await.map_err(|_| Status::unavailable("the AppendEntries stream is closed"))?;
        let reply = self
            .replies
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("the follower ended the AppendEntries stream"))?;
        self.awaiting_reply = false;
        Ok(reply)
    }
}

/// Sends `request` on `stream`, opening one first if there is none or the
/// last call left it out of step. A failed call drops the stream.
///
/// # Errors
/// The transport's status: opening, sending or reading the reply failed.
pub async fn call(
    stream: &mut Option<AppendStream>,
    client: &mut RaftServiceClient<Channel>,
    request: Payload,
) -> Result<Payload, Status> {
    if stream.as_ref().is_some_and(|s| s.awaiting_reply) {
        *stream = None;
    }
    let open = match stream {
        Some(open) => open,
        None => stream.insert(AppendStream::open(client).await?),
    };
    let reply = open.call(request).await;
    if reply.is_err() {
        *stream = None;
    }
    reply
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use chat_proto::raft::raft_service_server::{RaftService, RaftServiceServer};
    use chat_proto::raft::{CampaignRequest, CampaignResponse, ReadIndexRequest, ReadIndexResponse};
    use futures::{Stream, StreamExt};
    use tonic::{Request, Response};

    use super::*;

    /// A follower stand-in that echoes each request. "hang" is never
    /// answered; "fail" ends the stream with an error. Counts streams opened.
    #[derive(Default)]
    struct Echo {
        opened: Arc<AtomicUsize>,
    }

    type Replies = Pin<Box<dyn Stream<Item = Result<Payload, Status>> + Send>>;

    #[tonic::async_trait]
    impl RaftService for Echo {
        type AppendEntriesStream = Replies;

        async fn append_entries(&self, request: Request<Streaming<Payload>>) -> Result<Response<Replies>, Status> {
            self.opened.fetch_add(1, Ordering::SeqCst);
            let replies = request.into_inner().then(|request| async move {
                let request = request?;
                match request.data.as_slice() {
                    b"hang" => futures::future::pending().await,
                    b"fail" => Err(Status::internal("refused")),
                    _ => Ok(request),
                }
            });
            Ok(Response::new(Box::pin(replies)))
        }
        async fn vote(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
            Err(Status::unimplemented("vote"))
        }
        async fn pre_vote(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
            Err(Status::unimplemented("pre_vote"))
        }
        async fn install_snapshot(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
            Err(Status::unimplemented("install_snapshot"))
        }
        async fn forward(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
            Err(Status::unimplemented("forward"))
        }
        async fn read_index(&self, _: Request<ReadIndexRequest>) -> Result<Response<ReadIndexResponse>, Status> {
            Err(Status::unimplemented("read_index"))
        }
        async fn campaign(&self, _: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
            Err(Status::unimplemented("campaign"))
        }
    }

    /// A client of a real gRPC echo follower on loopback, and its stream count.
    async fn echo_follower() -> (RaftServiceClient<Channel>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = Echo::default();
        let opened = echo.opened.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftServiceServer::new(echo))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (
            RaftServiceClient::new(crate::network::peer::PeerDialer::plaintext().channel(&addr.to_string()).unwrap()),
            opened,
        )
    }

    fn payload(data: &str) -> Payload {
        Payload { data: data.as_bytes().to_vec() }
    }

    async fn send(stream: &mut Option<AppendStream>, client: &mut RaftServiceClient<Channel>, data: &str) -> String {
        let reply = call(stream, client, payload(data)).await.unwrap();
        String::from_utf8(reply.data).unwrap()
    }

    #[tokio::test]
    async fn calls_share_one_stream_and_each_gets_its_own_reply() {
        let (mut client, opened) = echo_follower().await;
        let mut stream = None;
        for i in 0..5 {
            assert_eq!(send(&mut stream, &mut client, &format!("request {i}")).await, format!("request {i}"));
        }
        assert_eq!(opened.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_abandoned_call_does_not_hand_its_reply_to_the_next() {
        let (mut client, opened) = echo_follower().await;
        let mut stream = None;
        assert_eq!(send(&mut stream, &mut client, "first").await, "first");
        let abandoned =
            tokio::time::timeout(Duration::from_millis(100), call(&mut stream, &mut client, payload("hang")));
        assert!(abandoned.await.is_err(), "the follower never answers 'hang'");
        // Reusing the stream would block behind the unanswered request (or
        // misread a late reply); a new stream answers at once.
        let after = tokio::time::timeout(Duration::from_secs(5), send(&mut stream, &mut client, "after"));
        assert_eq!(after.await.expect("the call after an abandoned one was answered"), "after");
        assert_eq!(opened.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_stream_the_follower_ended_is_replaced() {
        let (mut client, opened) = echo_follower().await;
        let mut stream = None;
        let failed = call(&mut stream, &mut client, payload("fail")).await.unwrap_err();
        assert_eq!(failed.code(), tonic::Code::Internal);
        assert!(stream.is_none(), "a failed stream is dropped");
        assert_eq!(send(&mut stream, &mut client, "again").await, "again");
        assert_eq!(opened.load(Ordering::SeqCst), 2);
    }
}
