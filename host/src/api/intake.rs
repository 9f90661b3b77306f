//! Reading request bodies under a whole-body deadline and a budget of body
//! bytes held in memory at once, across every request.
//!
//! The budget is taken as bytes arrive, not up front from a declared
//! `Content-Length`: a stalled upload holds only what it has sent, so
//! hundreds of them cannot lock out a sender whose small body arrives at
//! once. What a request took is held until it is answered.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppError;

/// Default budget of request-body bytes in memory at once: 256 MiB.
pub const DEFAULT_BODY_BUDGET_BYTES: usize = 256 << 20;
/// Default whole-body deadline: 30 s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The budget is counted in units of this many bytes.
const UNIT: usize = 1024;

/// How request bodies are read. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Intake {
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    body_read_timeout: Duration,
}

impl Default for Intake {
    fn default() -> Self {
        Intake::new(DEFAULT_BODY_BUDGET_BYTES, DEFAULT_BODY_READ_TIMEOUT)
    }
}

/// The share of the budget one body holds; released when dropped.
#[derive(Debug)]
pub struct BodyPermit {
    _held: Vec<OwnedSemaphorePermit>,
}

impl Intake {
    /// `budget_bytes` of bodies in memory at once, each read within `body_read_timeout`.
    pub fn new(budget_bytes: usize, body_read_timeout: Duration) -> Intake {
        let units = budget_bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        Intake {
            budget: Arc::new(Semaphore::new(units)),
            budget_bytes,
            body_read_timeout,
        }
    }

    /// Body bytes that may be held now (for metrics and tests).
    pub fn available_bytes(&self) -> usize {
        self.budget.available_permits() * UNIT
    }

    /// Reads `body` to its end: at most `max` bytes (413 beyond), within
    /// the deadline (408 after it), and within the budget (503 with
    /// `Retry-After` when other bodies hold it all).
    pub async fn read(&self, body: Body, max: usize) -> Result<(Bytes, BodyPermit), AppError> {
        let mut held = Vec::new();
        let reading = async {
            let mut body = body;
            let mut out = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame =
                    frame.map_err(|_| AppError::BadRequest("the request body could not be read to its end".into()))?;
                let Ok(chunk) = frame.into_data() else { continue };
                if out.len() + chunk.len() > max {
                    return Err(AppError::PayloadTooLarge(max as u64));
                }
                // Units for what the body will hold after this chunk.
                let needed = (out.len() + chunk.len()).div_ceil(UNIT) - out.len().div_ceil(UNIT);
                if needed > 0 {
                    let permit = u32::try_from(needed)
                        .ok()
                        .and_then(|n| self.budget.clone().try_acquire_many_owned(n).ok())
                        .ok_or_else(|| AppError::BodyBudget(self.budget_bytes))?;
                    held.push(permit);
                }
                out.extend_from_slice(&chunk);
            }
            Ok(Bytes::from(out))
        };
        match tokio::time::timeout(self.body_read_timeout, reading).await {
            Ok(Ok(bytes)) => Ok((bytes, BodyPermit { _held: held })),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AppError::RequestTimeout(self.body_read_timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_holds_its_share_of_the_budget_until_it_is_dropped() {
        let intake = Intake::new(8 * UNIT, Duration::from_secs(5));
        let (bytes, permit) = intake.read(Body::from(vec![1u8; 5 * UNIT]), 1 << 20).await.unwrap();
        assert_eq!(bytes.len(), 5 * UNIT);
        assert_eq!(intake.available_bytes(), 3 * UNIT);
        let refused = intake.read(Body::from(vec![1u8; 4 * UNIT]), 1 << 20).await;
        assert!(matches!(refused, Err(AppError::BodyBudget(_))), "{refused:?}");
        assert_eq!(
            intake.available_bytes(),
            3 * UNIT,
            "a refused body gives back what it took"
        );
        drop(permit);
        assert_eq!(intake.available_bytes(), 8 * UNIT);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_or_the_deadline_is_refused() {
        let intake = Intake::new(1 << 20, Duration::from_millis(100));
        let big = intake.read(Body::from(vec![1u8; 2000]), 1000).await;
        assert!(matches!(big, Err(AppError::PayloadTooLarge(1000))), "{big:?}");
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let never = Body::from_stream(tokio_stream_of(rx));
        let slow = intake.read(never, 1000).await;
        assert!(matches!(slow, Err(AppError::RequestTimeout(_))), "{slow:?}");
    }

    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
