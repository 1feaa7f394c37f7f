module ManageIQ
  module Providers
    module __NAME__
      VERSION = "0.1.0".freeze
    end
  end
end
