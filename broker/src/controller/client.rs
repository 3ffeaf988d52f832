//! A broker's (or a tool's) connection to the controller quorum: finds the active
//! controller, follows its hints, and gives up after a deadline. One request at a time.

use super::rpc::{read_message, write_message, Request, Response};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no active controller answered within {0:?}")]
    Unavailable(Duration),
}

pub struct ControllerClient {
    voters: Vec<(i32, SocketAddr)>,
    /// Index in `voters` of the node to try first.
    target: usize,
    connection: Option<(usize, BufReader<TcpStream>)>,
}

impl ControllerClient {
    pub fn new(voters: Vec<(i32, SocketAddr)>) -> ControllerClient {
        assert!(!voters.is_empty(), "a controller client needs voters");
        ControllerClient {
            voters,
            target: 0,
            connection: None,
        }
    }

    /// Send `request` to the active controller and return its answer; `NotController` is
    /// never returned: the client follows the hint or tries the next voter until `within`
    /// has passed.
    pub async fn call(
        &mut self,
        request: &Request,
        within: Duration,
    ) -> Result<Response, CallError> {
        let deadline = tokio::time::Instant::now() + within;
        let attempt_timeout = Duration::from_millis(1_000).min(within);
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(CallError::Unavailable(within));
            }
            let left = (deadline - now).min(attempt_timeout);
            match tokio::time::timeout(left, self.attempt(request)).await {
                Ok(Ok(Response::NotController { leader_hint })) => {
                    self.connection = None;
                    match leader_hint.and_then(|id| self.voters.iter().position(|(v, _)| *v == id))
                    {
                        Some(index) if index != self.target => self.target = index,
                        _ => {
                            // No better idea: try the next one after a short pause (an
                            // election may be under way).
                            self.target = (self.target + 1) % self.voters.len();
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(_)) | Err(_) => {
                    self.connection = None;
                    self.target = (self.target + 1) % self.voters.len();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn attempt(&mut self, request: &Request) -> std::io::Result<Response> {
        if self
            .connection
            .as_ref()
            .is_none_or(|(i, _)| *i != self.target)
        {
            let stream = TcpStream::connect(self.voters[self.target].1).await?;
            let _ = stream.set_nodelay(true);
            self.connection = Some((self.target, BufReader::new(stream)));
        }
        let (_, stream) = self.connection.as_mut().expect("connected above");
        write_message(stream.get_mut(), request).await?;
        match read_message::<_, Response>(stream).await? {
            Some(response) => Ok(response),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "controller closed the connection",
            )),
        }
    }
}
