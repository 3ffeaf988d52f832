//! InitProducerId: producer ids and epochs for idempotent producers.

use super::*;

pub(super) fn init_producer_id(
    shared: &Shared,
    req: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    match shared.state().init_producer_id() {
        Ok((id, epoch)) => resp
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(refusal) => resp.with_error_code(refusal.error.code()),
    }
}
