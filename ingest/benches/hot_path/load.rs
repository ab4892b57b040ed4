//! The load generator: HTTP/1.1 keep-alive connections through hyper's
//! client connection API, one task per connection, no pipelining. Two paces:
//! closed loop (a connection sends its next request as soon as the previous
//! answer is in: the peak rate) and fixed rate (every request has a due time
//! fixed in advance, and its latency counts from that due time, so an answer
//! that holds up the next sends shows in the percentiles instead of being
//! hidden by the wait: no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The request a load sends over and over, and the answer it expects.
#[derive(Debug, Clone)]
pub struct Shot {
    /// `GET` or `POST`.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Headers besides `Host`.
    pub headers: Vec<(header::HeaderName, &'static str)>,
    /// Empty for `GET`.
    pub body: Bytes,
    /// Any other status counts as unexpected.
    pub expect: StatusCode,
    /// Events the request carries, to turn req/s into events/s.
    pub events: usize,
}

impl Shot {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header(header::HOST, "bench");
        for (name, value) in &self.headers {
            request = request.header(name, *value);
        }
        request
            .body(Full::new(self.body.clone()))
            .expect("a well-formed request")
    }
}

/// When each connection sends.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Back to back.
    ClosedLoop,
    /// This many requests per second in total, spread evenly over the connections.
    Fixed(f64),
}

/// What a load saw.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Answers with the expected status.
    pub answered: usize,
    /// Answers with another status (e.g. 503 when Kafka falls behind).
    pub unexpected: usize,
    /// From the first send to the last answer.
    pub elapsed: Duration,
    /// Of every answer, sorted.
    latencies: Vec<Duration>,
}

impl Outcome {
    /// Expected answers per second.
    pub fn per_second(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        let last = self.latencies.len().saturating_sub(1);
        self.latencies
            .get((last as f64 * q).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// Sends `shot` over `connections` keep-alive connections at `pace` for `duration`.
pub async fn run(
    addr: SocketAddr,
    shot: &Shot,
    connections: usize,
    pace: Pace,
    duration: Duration,
) -> Outcome {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(addr).await);
    }
    let shot = Arc::new(shot.clone());
    let started = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(index, sender)| {
            let schedule = Schedule {
                started,
                until: started + duration,
                pace,
                connections,
                index,
            };
            tokio::spawn(drive(sender, shot.clone(), schedule))
        })
        .collect();
    let mut outcome = Outcome::default();
    for task in tasks {
        let connection = task.await.expect("a load connection panicked");
        outcome.answered += connection.answered;
        outcome.unexpected += connection.unexpected;
        outcome.latencies.extend(connection.latencies);
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies.sort_unstable();
    outcome
}

/// The status of one `GET path`, or `None` when nothing answers.
pub async fn status(addr: SocketAddr, path: &str) -> Option<StatusCode> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    let shot = Shot {
        method: Method::GET,
        path: path.to_owned(),
        headers: Vec::new(),
        body: Bytes::new(),
        expect: StatusCode::OK,
        events: 0,
    };
    let response = sender.send_request(shot.request()).await.ok()?;
    Some(response.status())
}

async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    // Small requests: without this each one waits for the previous ACK.
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    sender
}

/// The due times of one connection's requests.
struct Schedule {
    started: Instant,
    until: Instant,
    pace: Pace,
    connections: usize,
    index: usize,
}

impl Schedule {
    /// When the connection's `nth` request is due, `None` once the load is over.
    fn due(&self, nth: usize) -> Option<Instant> {
        let due = match self.pace {
            Pace::ClosedLoop => Instant::now(),
            Pace::Fixed(rate) => {
                // Connections take turns, so the total is evenly spaced.
                let slot = nth * self.connections + self.index;
                // A rate of 0 (the peak load had no successful answer, e.g.
                // Kafka was away) sends nothing instead of panicking.
                self.started + Duration::try_from_secs_f64(slot as f64 / rate).ok()?
            }
        };
        (due < self.until).then_some(due)
    }
}

async fn drive(
    mut sender: SendRequest<Full<Bytes>>,
    shot: Arc<Shot>,
    schedule: Schedule,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut nth = 0;
    while let Some(due) = schedule.due(nth) {
        tokio::time::sleep_until(due.into()).await;
        sender
            .ready()
            .await
            .expect("connection closed by the server");
        let response = sender
            .send_request(shot.request())
            .await
            .expect("request failed");
        let expected = response.status() == shot.expect;
        response.into_body().collect().await.expect("answer body");
        outcome.latencies.push(due.elapsed());
        if expected {
            outcome.answered += 1;
        } else {
            outcome.unexpected += 1;
        }
        nth += 1;
    }
    outcome
}
