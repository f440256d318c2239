// A scripted FIX 4.4 initiator built on QuickFIX (Debian's libquickfix-dev 1.15, whose headers
// use dynamic exception specifications: compile with -std=c++11), for the
// end-to-end tests: the counterparty is a FIX engine nobody on this project wrote.
//
// Usage: initiator SETTINGS_FILE USERNAME PASSWORD
// It logs on (Username 553 / Password 554 added to its Logon), prints every message it
// receives as one line on stdout, and obeys commands on stdin, one per line:
//   SEND 35=D|11=c1|55=AAPL|...   send an application message (fields '|'-separated)
//   SKIP n                        skip n outbound sequence numbers (a gap the acceptor sees)
//   FORGET n                      forget the last n received numbers (we ask for a resend)
//   SEQ                           print "SEQ <next sender> <next target>"
//   QUIT                          log out and exit
// Output lines: "EVENT LOGON", "EVENT LOGOUT", "ADMIN <msg>", "APP <msg>", "SEQ a b",
// "ERROR <text>"; messages are printed with '|' for SOH.
#include <quickfix/Application.h>
#include <quickfix/FileLog.h>
#include <quickfix/FileStore.h>
#include <quickfix/Session.h>
#include <quickfix/SessionSettings.h>
#include <quickfix/SocketInitiator.h>

#include <iostream>
#include <mutex>
#include <sstream>
#include <string>

class ScriptedInitiator : public FIX::Application {
 public:
  ScriptedInitiator(std::string username, std::string password)
      : username_(std::move(username)), password_(std::move(password)) {}

  void print(const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::cout << line << std::endl;
  }

  static std::string flat(const FIX::Message& message) {
    std::string text = message.toString();
    for (char& c : text) {
      if (c == '\x01') c = '|';
    }
    return text;
  }

  FIX::SessionID session_id;

  void onCreate(const FIX::SessionID& id) override { session_id = id; }
  void onLogon(const FIX::SessionID&) override { print("EVENT LOGON"); }
  void onLogout(const FIX::SessionID&) override { print("EVENT LOGOUT"); }
  void toAdmin(FIX::Message& message, const FIX::SessionID&) override {
    if (message.getHeader().getField(FIX::FIELD::MsgType) == "A") {
      message.setField(553, username_);
      message.setField(554, password_);
    }
  }
  void toApp(FIX::Message&, const FIX::SessionID&) throw(FIX::DoNotSend) override {}
  void fromAdmin(const FIX::Message& message, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue, FIX::RejectLogon) override {
    print("ADMIN " + flat(message));
  }
  void fromApp(const FIX::Message& message, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
             FIX::UnsupportedMessageType) override {
    print("APP " + flat(message));
  }

 private:
  std::string username_;
  std::string password_;
  std::mutex mutex_;
};

static FIX::Message parse_fields(const std::string& fields) {
  FIX::Message message;
  std::stringstream stream(fields);
  std::string field;
  while (std::getline(stream, field, '|')) {
    const auto equals = field.find('=');
    if (equals == std::string::npos) continue;
    const int tag = std::stoi(field.substr(0, equals));
    const std::string value = field.substr(equals + 1);
    if (tag == 35) {
      message.getHeader().setField(tag, value);
    } else {
      message.setField(tag, value);
    }
  }
  return message;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: initiator SETTINGS_FILE USERNAME PASSWORD" << std::endl;
    return 2;
  }
  try {
    FIX::SessionSettings settings(argv[1]);
    ScriptedInitiator application(argv[2], argv[3]);
    FIX::FileStoreFactory store(settings);
    FIX::FileLogFactory log(settings);
    FIX::SocketInitiator initiator(application, store, settings, log);
    initiator.start();
    std::string line;
    while (std::getline(std::cin, line)) {
      FIX::Session* session = FIX::Session::lookupSession(application.session_id);
      if (line.rfind("SEND ", 0) == 0) {
        FIX::Message message = parse_fields(line.substr(5));
        if (!FIX::Session::sendToTarget(message, application.session_id)) application.print("ERROR send refused");
      } else if (line.rfind("SKIP ", 0) == 0) {
        session->setNextSenderMsgSeqNum(session->getExpectedSenderNum() + std::stoi(line.substr(5)));
      } else if (line.rfind("FORGET ", 0) == 0) {
        session->setNextTargetMsgSeqNum(session->getExpectedTargetNum() - std::stoi(line.substr(7)));
      } else if (line == "SEQ") {
        application.print("SEQ " + std::to_string(session->getExpectedSenderNum()) + " " +
                          std::to_string(session->getExpectedTargetNum()));
      } else if (line == "QUIT") {
        break;
      }
    }
    initiator.stop();
  } catch (std::exception& error) {
    std::cout << "ERROR " << error.what() << std::endl;
    return 1;
  }
  return 0;
}
