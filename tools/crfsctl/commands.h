// commands.h - crfsctl subcommands. Each takes the arguments after its name
// and returns the process exit status (0 success, 1 failure, 2 usage).
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace crfs::ctl {

using Args = std::span<const std::string_view>;

int DecodeCommand(Args args);
int ExampleCommand(Args args);
int HashCommand(Args args);
int CsumCommand(Args args);
int TenantCommand(Args args);
int PolicyCommand(Args args);
int StatusCommand(Args args);
// policy apply|show|reload and status: asks the running crfsd (admin_cmd.cc).
int AdminCommand(const std::string& verb, Args args);

}  // namespace crfs::ctl
