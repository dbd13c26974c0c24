// export.h - audit records (docs/audit.md) in the field names SIEMs
// ingest: Elastic Common Schema (ECS 8.11) and OCSF 1.1 class 1001, File
// System Activity (docs/audit.md, "Export" has the mapping).
//
// One record becomes zero or more events: a transaction or read record one
// event per operation it lists (file events); with ECS, every other record
// one event of its own category (session, configuration, process). OCSF
// gets file events only. Pure functions of the record; any thread. The
// record comes from a log the caller verified.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

namespace crfs::audit {

std::vector<nlohmann::json> ToEcs(const nlohmann::json& record);
std::vector<nlohmann::json> ToOcsf(const nlohmann::json& record);

}  // namespace crfs::audit
