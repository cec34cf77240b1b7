//! The baseline of the cold-start benchmark: the smallest `lambda_http` function, with the
//! workspace's `lambda_http` (same features) and release profile as the real functions.

use lambda_http::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_req| async { Ok::<_, Error>("hello") })).await
}
