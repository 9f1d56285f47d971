//! What a request is before it reaches a handler: its metadata, bounded
//! here, and the statuses tonic gives requests that cannot be decoded.
//!
//! tonic answers a body that does not decode (invalid UTF-8 in a string,
//! a wrong wire type, garbage) with INTERNAL, and an oversized message with
//! OUT_OF_RANGE; both are the caller's fault, so [`client_error_statuses`]
//! turns them into INVALID_ARGUMENT and RESOURCE_EXHAUSTED.

use chat_proto::AUTHORIZATION;
use tonic::{Code, Request, Status};

/// All metadata of one request, names and values, in bytes. A session
/// token header is ~71 bytes; gRPC's own headers a few hundred.
pub const MAX_METADATA: usize = 8 << 10;
/// The `authorization` value: `Bearer ` and a 64-character token, with room to spare.
pub const MAX_AUTHORIZATION: usize = 256;
/// What the HTTP/2 layer accepts before a request reaches us. Far above
/// [`MAX_METADATA`] so that an oversized header gets a status on its own call
/// instead of a GOAWAY that ends every call on the connection (hyper's default
/// of 16 KiB did that for a 100 KB `authorization`).
pub const MAX_HEADER_LIST: u32 = 1 << 20;

/// An interceptor: refuses requests whose metadata is too large.
///
/// # Errors
/// RESOURCE_EXHAUSTED naming the limit.
pub fn check_metadata(request: Request<()>) -> Result<Request<()>, Status> {
    let headers = request.metadata().as_ref();
    let total: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if total > MAX_METADATA {
        return Err(Status::resource_exhausted(format!(
            "request metadata is {total} bytes; at most {MAX_METADATA} are accepted"
        )));
    }
    if let Some(auth) = headers.get(AUTHORIZATION)
        && auth.len() > MAX_AUTHORIZATION
    {
        return Err(Status::resource_exhausted(format!(
            "authorization is {} bytes; at most {MAX_AUTHORIZATION} are accepted (a session token is 64)",
            auth.len()
        )));
    }
    Ok(request)
}

/// Maps tonic's statuses for undecodable and oversized requests onto the
/// codes that say the caller is at fault (a `tower::util::MapResponseLayer`).
pub fn client_error_statuses<B: Default>(response: http::Response<B>) -> http::Response<B> {
    let Some(status) = response.extensions().get::<Status>() else { return response };
    let message = status.message();
    let remapped = match status.code() {
        Code::Internal if message.starts_with("failed to decode Protobuf message") => {
            Status::invalid_argument(format!("the request does not decode: {message}"))
        }
        Code::OutOfRange if message.contains("message length too large") => Status::resource_exhausted(message),
        _ => return response,
    };
    remapped.into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_metadata_is_refused_with_resource_exhausted() {
        let mut ok = Request::new(());
        ok.metadata_mut().insert(AUTHORIZATION, format!("Bearer {}", "a".repeat(64)).parse().unwrap());
        assert!(check_metadata(ok).is_ok());
        let mut long_token = Request::new(());
        long_token.metadata_mut().insert(AUTHORIZATION, format!("Bearer {}", "a".repeat(300)).parse().unwrap());
        assert_eq!(check_metadata(long_token).unwrap_err().code(), Code::ResourceExhausted);
        let mut many = Request::new(());
        for i in 0..100 {
            let name: tonic::metadata::MetadataKey<_> = format!("x-pad-{i}").parse().unwrap();
            many.metadata_mut().insert(name, "p".repeat(100).parse().unwrap());
        }
        let err = check_metadata(many).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.message().contains("metadata"), "{}", err.message());
    }

    #[test]
    fn decode_failures_become_invalid_argument_and_size_ones_resource_exhausted() {
        let code = |s: Status| {
            let r: http::Response<String> = client_error_statuses(s.into_http());
            r.extensions().get::<Status>().map(Status::code)
        };
        let decode = Status::internal("failed to decode Protobuf message: invalid string value: data is not UTF-8");
        assert_eq!(code(decode), Some(Code::InvalidArgument));
        let big = Status::out_of_range("Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes");
        assert_eq!(code(big), Some(Code::ResourceExhausted));
        assert_eq!(code(Status::internal("storage: disk on fire")), Some(Code::Internal), "real faults stay");
    }
}
