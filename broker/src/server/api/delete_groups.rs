//! DeleteGroups (v0-2): Empty groups go once their tombstones are committed.

use super::*;
use crate::group;

pub(super) async fn delete_groups(
    shared: &Shared,
    req: &DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    // Groups not coordinated here answer at once; the rest go to the coordinator together.
    let mut results: Vec<(String, Option<i16>)> = req
        .groups_names
        .iter()
        .map(|id| {
            (
                id.to_string(),
                shared.groups.ownership(shared, id.as_str()).error(),
            )
        })
        .collect();
    let served: Vec<String> = results
        .iter()
        .filter(|(_, e)| e.is_none())
        .map(|(id, _)| id.clone())
        .collect();
    if !served.is_empty() {
        let ids: Vec<&str> = served.iter().map(String::as_str).collect();
        let answer = shared.groups.request(shared, &ids, |c, token, now| {
            c.delete_groups(token, &served, now)
                .map(group::Response::DeleteGroups)
        });
        let answered = match answer {
            // Moved away since the check above: each answers with the error.
            Err(error) => served.iter().map(|id| (id.clone(), error)).collect(),
            Ok(answer) => match await_outcome(answer).await {
                group::Response::DeleteGroups(r) => r.groups,
                other => unreachable_answer("DeleteGroups", &other),
            },
        };
        for (id, error) in answered {
            if let Some(slot) = results.iter_mut().find(|(g, e)| *g == id && e.is_none()) {
                slot.1 = Some(error);
            }
        }
    }
    let results = results
        .into_iter()
        .map(|(id, error)| {
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(GroupId(str_bytes(&id)))
                .with_error_code(error.unwrap_or(ResponseError::CoordinatorNotAvailable.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
